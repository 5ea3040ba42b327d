/* messages.c - every text the reg command prints, in one table: Windows reg.exe's wording
 * for errors and prompts, and the usage screens. */
#include "reg_cli.h"

/* Indexed by reg_msg; templates are printf formats with the arguments reg_cli.h lists. */
static const char *const reg_msg_table[REG_MSG_COUNT] = {
    [REG_MSG_SUCCESS] = "The operation completed successfully.",
    [REG_MSG_CANCELLED] = "The operation was canceled by the user.",
    [REG_MSG_SYNTAX] = "Invalid syntax.\nType \"REG %s /?\" for usage.",
    [REG_MSG_SYNTAX_GENERAL] = "Invalid syntax.\nType \"REG /?\" for usage.",
    [REG_MSG_BAD_OPERATION] = "Invalid argument/option - '%s'.\nType \"REG /?\" for usage.",
    [REG_MSG_BAD_KEY] = "Invalid key name.\nType \"REG %s /?\" for usage.",
    [REG_MSG_REMOTE] = "Remote registry access is not supported.",
    [REG_MSG_NOT_FOUND] = "The system was unable to find the specified registry key or value.",
    [REG_MSG_ACCESS_DENIED] = "Access is denied.",
    [REG_MSG_BAD_TYPE] = "Unsupported registry data type [%s].",
    [REG_MSG_BAD_NUMBER] = "The option [/d] must be followed by a valid numeric value.",
    [REG_MSG_BAD_HEX] = "The option [/d] must be followed by a valid hexadecimal value.",
    [REG_MSG_BAD_STRING] = "The option [/d] must be followed by a valid string.",
    [REG_MSG_NEED_DATA] = "Invalid command-line parameters: the option [/d] is required for %s.",
    [REG_MSG_BAD_UTF8] = "Invalid argument: not valid UTF-8.",
    [REG_MSG_SAME_KEY] = "The source and destination keys cannot be the same.",
    [REG_MSG_ROOT_DELETE] = "Access is denied. The root key %s cannot be deleted.",
    [REG_MSG_FILE_OPEN] = "Error opening the file. There may be a disk or file system error.",
    [REG_MSG_NOT_REG_FILE] = "The specified file is not a registry script.",
    [REG_MSG_IMPORT_DIAG] = "reg: %s:%u: %s",
    [REG_MSG_SEARCH_END] = "End of search: %u match(es) found.",
    [REG_MSG_DEFAULT_NAME] = "(Default)",
    [REG_MSG_VALUE_NOT_SET] = "(value not set)",
    [REG_MSG_COMPARE_IDENTICAL] = "Result Compared: Identical",
    [REG_MSG_COMPARE_DIFFERENT] = "Result Compared: Different",
    [REG_MSG_PROMPT_OVERWRITE] = "Value %s exists, overwrite(Yes/No)? ",
    [REG_MSG_PROMPT_COPY] = "Value %s exists in %s, overwrite(Yes/No/All)? ",
    [REG_MSG_PROMPT_DELETE_KEY] = "Permanently delete the registry key %s (Yes/No)? ",
    [REG_MSG_PROMPT_DELETE_VALUE] = "Delete the registry value %s (Yes/No)? ",
    [REG_MSG_PROMPT_DELETE_ALL] = "Delete all values under the registry key %s (Yes/No)? ",
    [REG_MSG_PROMPT_FILE] = "File %s already exists. Overwrite (Yes/No)? ",

    [REG_MSG_USAGE] = "\n"
                      "REG Operation [Parameter List]\n"
                      "\n"
                      "  Operation  [ QUERY   | ADD    | DELETE  | COPY    |\n"
                      "               SAVE    | LOAD   | UNLOAD  | RESTORE |\n"
                      "               COMPARE | EXPORT | IMPORT ]\n"
                      "\n"
                      "Return Code: (Except for REG COMPARE)\n"
                      "\n"
                      "  0 - Successful\n"
                      "  1 - Failed\n"
                      "\n"
                      "For help on a specific operation type:\n"
                      "\n"
                      "  REG Operation /?\n"
                      "\n"
                      "Examples:\n"
                      "\n"
                      "  REG QUERY /?\n"
                      "  REG ADD /?\n"
                      "  REG DELETE /?\n"
                      "  REG COPY /?\n"
                      "  REG SAVE /?\n"
                      "  REG RESTORE /?\n"
                      "  REG LOAD /?\n"
                      "  REG UNLOAD /?\n"
                      "  REG COMPARE /?\n"
                      "  REG EXPORT /?\n"
                      "  REG IMPORT /?\n",

    [REG_MSG_USAGE_VIEW] =
        "\n"
        "  /reg:32  Use the 32-bit registry view: HKLM\\Software\\X is\n"
        "           HKLM\\Software\\Wow6432Node\\X, HKCR\\CLSID\\X is\n"
        "           HKLM\\Software\\Classes\\Wow6432Node\\CLSID\\X (see reg(1)).\n"
        "  /reg:64  Use the 64-bit registry view (the default).\n",

    [REG_MSG_USAGE_VIEW_HIVE] =
        "\n"
        "  /reg:32  Accepted and ignored: a hive is loaded and unloaded the same in both views.\n"
        "  /reg:64  Accepted and ignored: a hive is loaded and unloaded the same in both views.\n",

    [REG_MSG_USAGE_ADD] =
        "\n"
        "REG ADD KeyName [/v ValueName | /ve] [/t Type] [/s Separator] [/d Data] [/f]\n"
        "        [/reg:32 | /reg:64]\n"
        "\n"
        "  KeyName  ROOTKEY\\SubKey\n"
        "           ROOTKEY  [ HKLM | HKCU | HKCR | HKU | HKCC ] or the long names\n"
        "           SubKey   The full name of a registry key under the selected ROOTKEY.\n"
        "\n"
        "  /v       The value name, under the selected Key, to add.\n"
        "\n"
        "  /ve      Adds an empty value name (Default) for the key.\n"
        "\n"
        "  /t       RegKey data types\n"
        "           [ REG_SZ    | REG_MULTI_SZ | REG_EXPAND_SZ |\n"
        "             REG_DWORD | REG_QWORD    | REG_BINARY    | REG_NONE |\n"
        "             REG_DWORD_LITTLE_ENDIAN  | REG_DWORD_BIG_ENDIAN ]\n"
        "           If omitted, REG_SZ is assumed.\n"
        "\n"
        "  /s       Specify one character that you use as the separator in your data\n"
        "           string for REG_MULTI_SZ. If omitted, use \"\\0\" as the separator.\n"
        "\n"
        "  /d       The data to assign to the registry ValueName being added.\n"
        "\n"
        "  /f       Force overwriting the existing registry entry without prompt.\n"
        "\n"
        "Examples:\n"
        "\n"
        "  REG ADD HKLM\\Software\\MyCo /v Data /t REG_BINARY /d fe340ead\n"
        "    Adds a value (name: Data, type: REG_BINARY, data: fe340ead)\n"
        "\n"
        "  REG ADD HKLM\\Software\\MyCo /v MRU /t REG_MULTI_SZ /d fax\\0mail\n"
        "    Adds a value (name: MRU, type: REG_MULTI_SZ, data: fax\\0mail\\0\\0)\n",

    [REG_MSG_USAGE_QUERY] =
        "\n"
        "REG QUERY KeyName [/v [ValueName] | /ve] [/s]\n"
        "          [/f Data [/k] [/d] [/c] [/e]] [/t Type] [/z] [/se Separator]\n"
        "          [/reg:32 | /reg:64]\n"
        "\n"
        "  KeyName  ROOTKEY\\SubKey\n"
        "           ROOTKEY  [ HKLM | HKCU | HKCR | HKU | HKCC ] or the long names\n"
        "\n"
        "  /v       Queries for a specific registry key value.\n"
        "           If omitted, all values for the key are queried.\n"
        "           The argument of this switch can be omitted only together with /f:\n"
        "           then the search looks at value names.\n"
        "\n"
        "  /ve      Queries for the default value or empty value name (Default).\n"
        "\n"
        "  /s       Queries all subkeys and values recursively (like dir /s).\n"
        "\n"
        "  /se      Specifies the separator (one character only) in the data string\n"
        "           of REG_MULTI_SZ. Defaults to \"\\0\" as the separator.\n"
        "\n"
        "  /f       Specifies the data or pattern to search for (* and ? are\n"
        "           wildcards). Use double quotes if a string contains spaces.\n"
        "           Default is \"*\".\n"
        "\n"
        "  /k       Specifies to search in key names only.\n"
        "\n"
        "  /d       Specifies to search in data only.\n"
        "\n"
        "  /c       Specifies that the search is case sensitive.\n"
        "           The default search is case insensitive.\n"
        "\n"
        "  /e       Specifies to return only exact matches.\n"
        "           By default all the matches are returned.\n"
        "\n"
        "  /t       Specifies registry value data types, separated by commas.\n"
        "           Valid types are:\n"
        "             REG_SZ, REG_MULTI_SZ, REG_EXPAND_SZ,\n"
        "             REG_DWORD, REG_QWORD, REG_BINARY, REG_NONE\n"
        "           Defaults to all types.\n"
        "\n"
        "  /z       Verbose: shows the numeric equivalent for the type of the value.\n"
        "\n"
        "Examples:\n"
        "\n"
        "  REG QUERY HKLM\\Software\\Microsoft\\ResKit /v Version\n"
        "    Displays the value of the registry value Version\n"
        "\n"
        "  REG QUERY HKLM\\Software\\Microsoft\\ResKit\\Nt\\Setup /s\n"
        "    Displays all subkeys and values under the registry key Setup\n"
        "\n"
        "  REG QUERY HKCU\\Software\\MyCo /f Setup /k /s\n"
        "    Displays the keys below MyCo whose names contain Setup\n",

    [REG_MSG_USAGE_DELETE] =
        "\n"
        "REG DELETE KeyName [/v ValueName | /ve | /va] [/f] [/reg:32 | /reg:64]\n"
        "\n"
        "  KeyName  ROOTKEY\\SubKey\n"
        "           ROOTKEY  [ HKLM | HKCU | HKCR | HKU | HKCC ] or the long names\n"
        "           SubKey   The full name of a registry key under the selected ROOTKEY.\n"
        "                    A root key itself cannot be deleted.\n"
        "\n"
        "  ValueName  The value name, under the selected Key, to delete.\n"
        "             When omitted, all subkeys and values under the Key are deleted.\n"
        "\n"
        "  /ve      Delete the value of empty value name (Default).\n"
        "\n"
        "  /va      Delete all values under this key.\n"
        "\n"
        "  /f       Forces the deletion without prompt.\n"
        "\n"
        "Examples:\n"
        "\n"
        "  REG DELETE HKLM\\Software\\MyCo\\MyApp\\Timeout\n"
        "    Deletes the registry key Timeout and all its subkeys and values\n"
        "\n"
        "  REG DELETE HKLM\\Software\\MyCo /v MTU\n"
        "    Deletes the registry value MTU under MyCo\n",

    [REG_MSG_USAGE_COPY] =
        "\n"
        "REG COPY KeyName1 KeyName2 [/s] [/f] [/reg:32 | /reg:64]\n"
        "\n"
        "  KeyName  ROOTKEY\\SubKey\n"
        "           ROOTKEY  [ HKLM | HKCU | HKCR | HKU | HKCC ] or the long names\n"
        "\n"
        "  /s       Copies all subkeys and values.\n"
        "\n"
        "  /f       Forces the copy without prompt.\n"
        "\n"
        "Example:\n"
        "\n"
        "  REG COPY HKLM\\Software\\MyCo\\MyApp HKCU\\Software\\MyCo\\SaveMyApp /s\n"
        "    Copies all subkeys and values under the key MyApp to the key SaveMyApp\n",

    [REG_MSG_USAGE_EXPORT] =
        "\n"
        "REG EXPORT KeyName FileName [/y] [/reg:32 | /reg:64]\n"
        "\n"
        "  KeyName  ROOTKEY\\SubKey\n"
        "           ROOTKEY  [ HKLM | HKCU | HKCR | HKU | HKCC ] or the long names\n"
        "\n"
        "  FileName  The name of the file to export to (a .reg file, UTF-16LE).\n"
        "\n"
        "  /y       Force overwriting the existing file without prompt.\n"
        "\n"
        "Example:\n"
        "\n"
        "  REG EXPORT HKLM\\Software\\MyCo\\MyApp AppBkUp.reg\n"
        "    Exports all subkeys and values of the key MyApp to the file AppBkUp.reg\n",

    [REG_MSG_USAGE_IMPORT] = "\n"
                             "REG IMPORT FileName [/reg:32 | /reg:64]\n"
                             "\n"
                             "  FileName  The name of the .reg file to import.\n"
                             "\n"
                             "Example:\n"
                             "\n"
                             "  REG IMPORT AppBkUp.reg\n"
                             "    Imports registry entries from the file AppBkUp.reg\n",

    [REG_MSG_USAGE_COMPARE] =
        "\n"
        "REG COMPARE KeyName1 KeyName2 [/v ValueName | /ve] [Output] [/s]\n"
        "            [/reg:32 | /reg:64]\n"
        "\n"
        "  KeyName  ROOTKEY\\SubKey\n"
        "           ROOTKEY  [ HKLM | HKCU | HKCR | HKU | HKCC ] or the long names\n"
        "\n"
        "  ValueName  The value name, under the selected Key, to compare.\n"
        "             When omitted, all values under the Key are compared.\n"
        "\n"
        "  /ve      Compare the value of empty value name (Default).\n"
        "\n"
        "  /s       Compare all subkeys and values.\n"
        "\n"
        "  Output   [/oa | /od | /os | /on]\n"
        "           When omitted, output only differences.\n"
        "    /oa    Output all differences and matches.\n"
        "    /od    Output only differences.\n"
        "    /os    Output only matches.\n"
        "    /on    No output.\n"
        "\n"
        "Return Code:\n"
        "\n"
        "  0 - Successful, the result compared is identical\n"
        "  1 - Failed\n"
        "  2 - Successful, the result compared is different\n"
        "\n"
        "Example:\n"
        "\n"
        "  REG COMPARE HKLM\\Software\\MyCo\\MyApp HKLM\\Software\\MyCo\\SaveMyApp /s\n"
        "    Compares all subkeys and values under the keys MyApp and SaveMyApp\n",

    [REG_MSG_USAGE_SAVE] =
        "\n"
        "REG SAVE KeyName FileName [/y] [/reg:32 | /reg:64]\n"
        "\n"
        "  KeyName  ROOTKEY\\SubKey\n"
        "           ROOTKEY  [ HKLM | HKCU | HKCR | HKU | HKCC ] or the long names\n"
        "\n"
        "  FileName  The name of the hive file (regf format) to save to.\n"
        "\n"
        "  /y       Force overwriting the existing file without prompt.\n"
        "\n"
        "Example:\n"
        "\n"
        "  REG SAVE HKLM\\Software\\MyCo\\MyApp AppBkUp.hiv\n"
        "    Saves the hive MyApp to the file AppBkUp.hiv\n",

    [REG_MSG_USAGE_RESTORE] =
        "\n"
        "REG RESTORE KeyName FileName [/reg:32 | /reg:64]\n"
        "\n"
        "  KeyName  ROOTKEY\\SubKey\n"
        "           ROOTKEY  [ HKLM | HKCU | HKCR | HKU | HKCC ] or the long names\n"
        "\n"
        "  FileName  The name of the hive file to restore. It replaces the values and\n"
        "            subkeys of the key. It must have been created with REG SAVE.\n"
        "\n"
        "Example:\n"
        "\n"
        "  REG RESTORE HKLM\\Software\\MyCo\\MyApp AppBkUp.hiv\n"
        "    Restores the file AppBkUp.hiv over the key MyApp\n",

    [REG_MSG_USAGE_LOAD] = "\n"
                           "REG LOAD KeyName FileName [/reg:32 | /reg:64]\n"
                           "\n"
                           "  KeyName  ROOTKEY\\SubKey\n"
                           "           ROOTKEY  [ HKLM | HKU ]\n"
                           "           SubKey   The name of the key to load the hive file into.\n"
                           "                    It must not exist yet.\n"
                           "\n"
                           "  FileName  The name of the hive file to load (regf format).\n"
                           "\n"
                           "Example:\n"
                           "\n"
                           "  REG LOAD HKLM\\TempHive TempHive.hiv\n"
                           "    Loads the file TempHive.hiv into the key HKLM\\TempHive\n",

    [REG_MSG_USAGE_UNLOAD] =
        "\n"
        "REG UNLOAD KeyName [/reg:32 | /reg:64]\n"
        "\n"
        "  KeyName  ROOTKEY\\SubKey\n"
        "           ROOTKEY  [ HKLM | HKU ]\n"
        "           SubKey   The name of a hive loaded with REG LOAD. Its changes are\n"
        "                    written back to its file.\n"
        "\n"
        "Example:\n"
        "\n"
        "  REG UNLOAD HKLM\\TempHive\n"
        "    Unloads the hive TempHive in HKLM\n",
};

const char *reg_msg_text(reg_msg id)
{
    if ((unsigned)id >= REG_MSG_COUNT || !reg_msg_table[id])
        return "";
    return reg_msg_table[id];
}
