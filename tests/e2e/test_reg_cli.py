"""End-to-end tests of the reg command: every operation driven like a user would, with the
exact output compared, exit codes checked and the store read back (through reg query or
reg export). Each test has its own empty IMS_ROOT."""
import os

import pytest

K = r"HKCU\Software\IMSTest"
LK = r"HKEY_CURRENT_USER\Software\IMSTest"
OK = "The operation completed successfully.\n"
CANCEL = "The operation was canceled by the user.\n"
NOT_FOUND = "ERROR: The system was unable to find the specified registry key or value.\n"
OPS = ["ADD", "QUERY", "DELETE", "COPY", "EXPORT", "IMPORT", "COMPARE", "SAVE", "RESTORE",
       "LOAD", "UNLOAD"]

REG_NONE, REG_SZ, REG_EXPAND_SZ, REG_BINARY, REG_DWORD, REG_DWORD_BIG_ENDIAN = 0, 1, 2, 3, 4, 5
REG_MULTI_SZ, REG_QWORD = 7, 11


def syntax_error(op=None):
    hint = f'Type "REG {op} /?" for usage.' if op else 'Type "REG /?" for usage.'
    return "ERROR: Invalid syntax.\n" + hint + "\n"


def bad_key(op):
    return f'ERROR: Invalid key name.\nType "REG {op} /?" for usage.\n'


def ok(run_reg, *args, input=None):
    rc, out, err = run_reg(*args, input=input)
    assert (rc, err) == (0, ""), f"reg {args}: rc {rc} stderr {err!r}"
    return out


def sz(s):
    return (s + "\0").encode("utf-16-le")


def multi(*strings):
    return "".join(s + "\0" for s in strings).encode("utf-16-le") + b"\0\0"


# --- reading .reg files (to see the exact bytes that were stored) ---------------------------


def _unescape(s):
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            i += 1
        out.append(s[i])
        i += 1
    return "".join(out)


def _split_name(line):
    if line.startswith("@="):
        return "", line[2:]
    assert line[0] == '"', line
    i = 1
    while line[i] != '"':
        i += 2 if line[i] == "\\" else 1
    assert line[i + 1] == "=", line
    return _unescape(line[1:i]), line[i + 2:]


def _data(rhs):
    if rhs.startswith('"'):
        assert rhs.endswith('"'), rhs
        return REG_SZ, sz(_unescape(rhs[1:-1]))
    if rhs.startswith("dword:"):
        return REG_DWORD, int(rhs[6:], 16).to_bytes(4, "little")
    if rhs.startswith("hex:"):
        t, body = REG_BINARY, rhs[4:]
    else:
        assert rhs.startswith("hex("), rhs
        close = rhs.index("):")
        t, body = int(rhs[4:close], 16), rhs[close + 2:]
    return t, bytes(int(b, 16) for b in body.split(",") if b.strip())


def parse_reg(data):
    """{key: {value name: (type, bytes)}} of a regedit version 5 file."""
    assert data[:2] == b"\xff\xfe"
    lines, cur = [], ""
    for line in data[2:].decode("utf-16-le").split("\r\n"):
        cur += line.lstrip(" ") if cur else line
        if cur.endswith("\\") and "=hex" in cur:
            cur = cur[:-1]
            continue
        lines.append(cur)
        cur = ""
    assert lines[0] == "Windows Registry Editor Version 5.00"
    keys, key = {}, None
    for line in lines[1:]:
        if line.startswith("["):
            key = line[1:-1]
            keys[key] = {}
        elif line.startswith(("@", '"')):
            name, rhs = _split_name(line)
            keys[key][name] = _data(rhs)
    return keys


@pytest.fixture
def stored(run_reg, workdir):
    """stored(key) -> {value name: (type, bytes)} of key, through reg export."""

    def read(key=K, long_key=LK):
        ok(run_reg, "export", key, "stored.reg", "/y")
        return parse_reg((workdir / "stored.reg").read_bytes())[long_key]

    return read


@pytest.fixture
def snapshot(run_reg):
    """snapshot() -> the whole of HKCU and HKLM as reg query /s shows them."""

    def take():
        return tuple(run_reg("query", root, "/s")[1] for root in ("HKCU", "HKLM"))

    return take


# --- general syntax and help -----------------------------------------------------------------


def test_no_arguments(run_reg, ims_root):
    assert run_reg() == (1, "", syntax_error())
    assert os.listdir(ims_root) == []


@pytest.mark.parametrize("sw", ["/?", "/h", "-H", "-?", "/H"])
def test_general_help(run_reg, sw):
    rc, out, err = run_reg(sw)
    assert (rc, err) == (0, "")
    assert out.startswith("\nREG Operation [Parameter List]\n")
    for op in OPS:
        assert f"REG {op} /?" in out


def test_general_help_takes_nothing_more(run_reg):
    assert run_reg("/?", "QUERY") == (1, "", syntax_error())


def test_unknown_operation(run_reg, ims_root):
    assert run_reg("bogus") == (
        1, "", "ERROR: Invalid argument/option - 'bogus'.\nType \"REG /?\" for usage.\n")
    assert run_reg("flags", "HKLM")[0] == 1
    assert os.listdir(ims_root) == []


@pytest.mark.parametrize("op", OPS)
def test_operation_alone(run_reg, op):
    assert run_reg(op.lower()) == (1, "", syntax_error(op))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("sw", ["/?", "/h", "-H", "-?"])
def test_operation_help(run_reg, op, sw):
    rc, out, err = run_reg(op.capitalize(), sw)
    assert (rc, err) == (0, "")
    assert out.startswith(f"\nREG {op} ")
    if op in ("LOAD", "UNLOAD"):
        assert out.endswith("  /reg:64  Accepted and ignored: "
                            "a hive is loaded and unloaded the same in both views.\n")
    else:
        assert out.endswith("  /reg:64  Use the 64-bit registry view (the default).\n")


@pytest.mark.parametrize("op", OPS)
def test_operation_help_with_more_is_invalid(run_reg, op):
    assert run_reg(op, "/?", "/f")[0] == 1


# Bad command lines: each must fail with exit 1, print the syntax error and change nothing.
SYNTAX_ERRORS = [
    ("ADD", [K, "/v", "Wine", "/t", "REG_DWORD", "/d", "0x1", "/v", "Test", "/f"]),
    ("ADD", [K, "/v", "dup1", "/t", "REG_DWORD", "/d", "123", "/f", "/t", "REG_SZ"]),
    ("ADD", [K, "/v", "dup2", "/t", "REG_DWORD", "/d", "123", "/f", "/d", "456"]),
    ("ADD", [K, "/f", "/f"]),
    ("ADD", [K, "/v", "Wine", "/ve"]),
    ("ADD", [K, "/ve", "/f", "/ve"]),
    ("ADD", [K, "/v"]),
    ("ADD", [K, "/d", "Test", "/f", "/v"]),
    ("ADD", [K, "/v", "x", "/t", "REG_SZ", "/f", "/d"]),
    ("ADD", [K, "/v", "x", "/t"]),
    ("ADD", [K, "/v", "invalid1", "/a"]),
    ("ADD", [K, "/v", "invalid2", "/ae"]),
    ("ADD", [K, "/v", "invalid3", "/"]),
    ("ADD", [K, "/v", "invalid4", "-"]),
    ("ADD", [K, "/v", "x", "/?"]),
    ("ADD", [K, "extra", "/f"]),
    ("ADD", [K, "/v", "abc", "/d", "123", "/f", "/reg:32", "/reg:32"]),
    ("ADD", [K, "/v", "abc", "/d", "123", "/f", "/reg:32", "/reg:64"]),
    ("ADD", [K, "/v", "abc", "/d", "123", "/f", "/reg:64", "/reg:64"]),
    ("ADD", [K, "/v", "abc", "/d", "123", "/f", "/reg:16"]),
    ("ADD", [K, "/v", "m", "/t", "REG_MULTI_SZ", "/s", "#randomgibberish", "/d", "a#b", "/f"]),
    ("ADD", [K, "/v", "m", "/t", "REG_MULTI_SZ", "/s", "\\0", "/d", "a\\0b", "/f"]),
    ("ADD", [K, "/v", "m", "/t", "REG_MULTI_SZ", "/s", "", "/d", "a#b", "/f"]),
    ("ADD", [K, "/v", "m", "/t", "REG_MULTI_SZ", "/f", "/s"]),
    ("QUERY", [K, "/v"]),
    ("QUERY", [K, "/v", "Test1", "/v", "Test2"]),
    ("QUERY", [K, "/v", "Test1", "/ve"]),
    ("QUERY", [K, "/s", "/s"]),
    ("QUERY", [K, "/x"]),
    ("QUERY", [K, "/reg:32", "/reg:32"]),
    ("QUERY", [K, "/reg:32", "/reg:64"]),
    ("QUERY", [K, "/reg:64", "/reg:64"]),
    ("QUERY", [K, "/k"]),
    ("QUERY", [K, "/d"]),
    ("QUERY", [K, "/c", "/s"]),
    ("QUERY", [K, "/e"]),
    ("QUERY", [K, "/f"]),
    ("QUERY", [K, "/se"]),
    ("QUERY", [K, "/se", ""]),
    ("QUERY", [K, "/se", "ab"]),
    ("QUERY", [K, "/v", "name", "/f", "x"]),
    ("QUERY", [K, "/ve", "/t", "REG_SZ"]),
    ("QUERY", [K, "/f", "a", "/f", "b"]),
    ("DELETE", [K, "/v", "A", "/ve", "/f"]),
    ("DELETE", [K, "/v", "A", "/va", "/f"]),
    ("DELETE", [K, "/ve", "/va", "/f"]),
    ("DELETE", [K, "/f", "/f"]),
    ("DELETE", [K, "/va", "/va", "/f"]),
    ("DELETE", [K, "/v"]),
    ("DELETE", [K, "/s", "/f"]),
    ("DELETE", [K, "/f", "/reg:32", "/reg:64"]),
    ("COPY", [K]),
    ("COPY", [K, K + r"\Dst", K + r"\Third"]),
    ("COPY", [K, K + r"\Dst", "/s", "/s"]),
    ("COPY", [K, K + r"\Dst", "/f", "/f"]),
    ("COPY", [K, K + r"\Dst", "/v", "x"]),
    ("COPY", [K, K + r"\Dst", "/reg:64", "/reg:32"]),
    ("EXPORT", [K]),
    ("EXPORT", [K, "/y", "file.reg"]),
    ("EXPORT", [K, "file.reg", "file2.reg"]),
    ("EXPORT", [K, "file.reg", "/f"]),
    ("EXPORT", [K, "file.reg", "/reg:32", "/reg:64"]),
    ("IMPORT", ["a.reg", "b.reg"]),
    ("IMPORT", ["a.reg", "/y"]),
    ("IMPORT", ["a.reg", "/reg:32", "/reg:32"]),
    ("COMPARE", [K]),
    ("COMPARE", [K, K, "/oa", "/od"]),
    ("COMPARE", [K, K, "/os", "/on"]),
    ("COMPARE", [K, K, "/v", "a", "/ve"]),
    ("COMPARE", [K, K, "/s", "/s"]),
    ("COMPARE", [K, K, "/v"]),
    ("SAVE", [K]),
    ("SAVE", [K, "f.hiv", "/y", "/y"]),
    ("SAVE", [K, "f.hiv", "/f"]),
    ("RESTORE", [K]),
    ("RESTORE", [K, "f.hiv", "/y"]),
    ("LOAD", [r"HKU\IMSHive"]),
    ("LOAD", [r"HKU\IMSHive", "f.hiv", "f2.hiv"]),
    ("UNLOAD", [r"HKU\IMSHive", "/f"]),
]


@pytest.mark.parametrize("op,args", SYNTAX_ERRORS)
def test_syntax_errors(run_reg, snapshot, op, args):
    ok(run_reg, "add", K + r"\Sub", "/v", "Keep", "/d", "me", "/f")
    ok(run_reg, "add", K, "/v", "A", "/d", "a", "/f")
    before = snapshot()
    assert run_reg(op.lower(), *args, input="y\ny\ny\n") == (1, "", syntax_error(op))
    assert snapshot() == before


@pytest.mark.parametrize("op,args", SYNTAX_ERRORS)
def test_syntax_errors_touch_no_store(run_reg, ims_root, op, args):
    # Nothing is opened before the command line is known to be good.
    assert run_reg(op, *args)[0] == 1
    assert os.listdir(ims_root) == []


# --- key arguments ---------------------------------------------------------------------------

BAD_KEYS = [
    "\\HKCU\\Software\\IMSTest\\keytest0",
    K + "\\keytest2\\\\",
    "HKCU\\",
    "HKEY_CURRENT_USER\\",
    "HKLM\\",
    "HKEY_DYN_DATA\\Software",
    "HKDD\\Software",
    "HKCU_X\\Software",
    "HKXX\\Software",
    "HK",
    "Software\\IMSTest",
    "\\\\\\HKCU\\Software",
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_key_names(run_reg, snapshot, key):
    ok(run_reg, "add", K, "/v", "A", "/d", "a", "/f")
    before = snapshot()
    assert run_reg("add", key, "/v", "Value1", "/d", "foo", "/f") == (1, "", bad_key("ADD"))
    assert run_reg("query", key) == (1, "", bad_key("QUERY"))
    assert run_reg("delete", key, "/f") == (1, "", bad_key("DELETE"))
    assert run_reg("copy", key, K + r"\C", "/f") == (1, "", bad_key("COPY"))
    assert run_reg("copy", K, key, "/f") == (1, "", bad_key("COPY"))
    assert run_reg("export", key, "x.reg", "/y") == (1, "", bad_key("EXPORT"))
    assert run_reg("compare", K, key) == (1, "", bad_key("COMPARE"))
    assert run_reg("save", key, "x.hiv", "/y") == (1, "", bad_key("SAVE"))
    assert snapshot() == before


def test_remote_key_is_refused(run_reg, ims_root):
    msg = "ERROR: Remote registry access is not supported.\n"
    assert run_reg("add", r"\\remote-pc\HKCU\Software\X", "/f") == (1, "", msg)
    assert run_reg("query", r"\\remote\HKLM\Software") == (1, "", msg)
    assert os.listdir(ims_root) == []


@pytest.mark.parametrize("root,long_name", [
    ("HKLM", "HKEY_LOCAL_MACHINE"), ("hklm", "HKEY_LOCAL_MACHINE"),
    ("HKEY_LOCAL_MACHINE", "HKEY_LOCAL_MACHINE"), ("HKCU", "HKEY_CURRENT_USER"),
    ("hkey_current_user", "HKEY_CURRENT_USER"), ("HKU", "HKEY_USERS"),
    ("HKEY_USERS", "HKEY_USERS"), ("HKCR", "HKEY_CLASSES_ROOT"),
    ("HKEY_CLASSES_ROOT", "HKEY_CLASSES_ROOT"), ("HKCC", "HKEY_CURRENT_CONFIG"),
    ("HkEy_CuRrEnT_CoNfIg", "HKEY_CURRENT_CONFIG"),
])
def test_root_names_short_and_long(run_reg, root, long_name):
    ok(run_reg, "add", root + r"\IMSRootTest", "/v", "V", "/d", "x", "/f")
    assert ok(run_reg, "query", root + r"\IMSRootTest") == (
        f"\n{long_name}\\IMSRootTest\n    V    REG_SZ    x\n\n")


def test_trailing_backslash_and_slash_in_names(run_reg):
    assert ok(run_reg, "add", K + "\\keytest3\\", "/f") == OK
    assert ok(run_reg, "add", K + r"\https://winehq.org", "/f") == OK
    assert ok(run_reg, "query", K) == (
        f"\n{LK}\\https://winehq.org\n{LK}\\keytest3\n")
    assert ok(run_reg, "query", K + "\\keytest3\\", "/ve") == (
        f"\n{LK}\\keytest3\n    (Default)    REG_SZ    \n\n")


def test_output_keeps_the_subpath_as_typed(run_reg):
    ok(run_reg, "add", K, "/v", "MySz", "/d", "v", "/f")
    assert ok(run_reg, "query", r"hkey_current_user\SOFTWARE\imstest", "/v", "mysz") == (
        "\nHKEY_CURRENT_USER\\SOFTWARE\\imstest\n    mysz    REG_SZ    v\n\n")


def test_view_switches_share_hkcu_software(run_reg):
    # HKCU\Software is shared by the views (tests/e2e/test_reg_views.py has the rest).
    ok(run_reg, "add", K, "/v", "W32", "/d", "a", "/f", "/reg:32")
    ok(run_reg, "add", K, "/v", "W64", "/d", "b", "/f", "/REG:64")
    expected = f"\n{LK}\n    W32    REG_SZ    a\n    W64    REG_SZ    b\n\n"
    assert ok(run_reg, "query", K, "/reg:64") == expected
    assert ok(run_reg, "query", K, "-reg:32") == expected


# --- ADD -------------------------------------------------------------------------------------


def test_add_key_sets_empty_default(run_reg, stored):
    assert run_reg("add", K, "/f") == (0, OK, "")
    assert stored() == {"": (REG_SZ, sz(""))}
    # /t and /d without /v also go to the default value.
    ok(run_reg, "add", K, "/t", "REG_DWORD", "/d", "0x5", "/f")
    assert stored() == {"": (REG_DWORD, b"\x05\0\0\0")}
    ok(run_reg, "add", K, "/f")
    assert stored() == {"": (REG_SZ, sz(""))}


def test_add_value_leaves_default_unset(run_reg, stored):
    ok(run_reg, "add", K, "/v", "Test", "/t", "REG_SZ", "/d", "Just me here", "/f")
    assert stored() == {"Test": (REG_SZ, sz("Just me here"))}


def test_add_keeps_other_values_and_subkeys(run_reg, stored):
    ok(run_reg, "add", K + r"\Subkey", "/f")
    ok(run_reg, "add", K, "/v", "Test1", "/d", "Value1", "/f")
    ok(run_reg, "add", K, "/v", "Test2", "/t", "REG_DWORD", "/d", "0x123", "/f")
    ok(run_reg, "add", K, "/t", "REG_NONE", "/d", "Test", "/f")
    assert stored() == {"Test1": (REG_SZ, sz("Value1")),
                        "Test2": (REG_DWORD, b"\x23\x01\0\0"),
                        "": (REG_NONE, sz("Test"))}
    assert ok(run_reg, "query", K + r"\Subkey") == f"\n{LK}\\Subkey\n    (Default)    REG_SZ    \n\n"


def test_add_default_to_existing_key_without_f_does_not_ask(run_reg, stored):
    ok(run_reg, "add", K, "/v", "X", "/d", "x", "/f")
    assert run_reg("add", K) == (0, OK, "")
    assert stored()[""] == (REG_SZ, sz(""))


ACCEPTED = [
    # (/t, /d or None, expected type, expected bytes)
    ("REG_SZ", "Hello, World", REG_SZ, sz("Hello, World")),
    ("REG_SZ", None, REG_SZ, sz("")),
    ("REG_SZ", "", REG_SZ, sz("")),
    ("reg_sz", "foo\\0bar", REG_SZ, sz("foo\\0bar")),
    ("REG_SZ", "one/two/three", REG_SZ, sz("one/two/three")),
    (None, "deadbeef", REG_SZ, sz("deadbeef")),
    ("REG_EXPAND_SZ", "dead%PATH%beef", REG_EXPAND_SZ, sz("dead%PATH%beef")),
    ("REG_EXpand_sz", "dead^%PATH^%beef", REG_EXPAND_SZ, sz("dead^%PATH^%beef")),
    ("REG_EXPAND_SZ", None, REG_EXPAND_SZ, sz("")),
    ("REG_NONE", "deadbeef", REG_NONE, sz("deadbeef")),
    ("REG_NONE", None, REG_NONE, sz("")),
    ("REG_BINARY", "deadbeef", REG_BINARY, bytes.fromhex("deadbeef")),
    ("REG_BINARY", "DeAdBeEf0DD", REG_BINARY, bytes.fromhex("0deadbeef0dd")),
    ("REG_BINARY", "f", REG_BINARY, b"\x0f"),
    ("REG_BINARY", "", REG_BINARY, b""),
    ("REG_BINARY", None, REG_BINARY, b""),
    ("REG_DWORD", "12345678", REG_DWORD, (12345678).to_bytes(4, "little")),
    ("reg_dword", "0123", REG_DWORD, (123).to_bytes(4, "little")),
    ("REG_dword", "0xdeadbeef", REG_DWORD, (0xDEADBEEF).to_bytes(4, "little")),
    ("REG_DWORD", "0xffffffff", REG_DWORD, b"\xff\xff\xff\xff"),
    ("REG_DWORD", "4294967295", REG_DWORD, b"\xff\xff\xff\xff"),
    ("REG_DWORD", "0X123", REG_DWORD, (0x123).to_bytes(4, "little")),
    ("REG_DWORD", "0", REG_DWORD, b"\0\0\0\0"),
    ("REG_DWORD_LITTLE_ENDIAN", "456", REG_DWORD, (456).to_bytes(4, "little")),
    # BIG_ENDIAN is stored little-endian, as reg.exe has always done.
    ("REG_DWORD_BIG_ENDIAN", "456", REG_DWORD_BIG_ENDIAN, (456).to_bytes(4, "little")),
    ("REG_DWORD_BIG_ENDIAN", "0x01020304", REG_DWORD_BIG_ENDIAN, bytes([4, 3, 2, 1])),
    ("REG_QWORD", "0x123456789abcdef", REG_QWORD, (0x123456789ABCDEF).to_bytes(8, "little")),
    ("REG_QWORD", None, REG_QWORD, bytes(8)),
    ("reg_qword", "12345678", REG_QWORD, (12345678).to_bytes(8, "little")),
    ("REG_QWORD", "0123", REG_QWORD, (123).to_bytes(8, "little")),
    ("REG_qword", "0xdeadbeef", REG_QWORD, (0xDEADBEEF).to_bytes(8, "little")),
    ("REG_QWORD", "-1", REG_QWORD, b"\xff" * 8),
    ("REG_QWORD", "0xffffffffffffffff", REG_QWORD, b"\xff" * 8),
    ("REG_QWORD", "18446744073709551615", REG_QWORD, b"\xff" * 8),
    ("REG_QWORD", "0X123", REG_QWORD, (0x123).to_bytes(8, "little")),
    ("REG_MULTI_SZ", None, REG_MULTI_SZ, b"\0\0"),
    ("REG_MULTI_SZ", "", REG_MULTI_SZ, b"\0\0"),
    ("REG_MULTI_SZ", "three\\0little\\0strings", REG_MULTI_SZ, multi("three", "little", "strings")),
    ("REG_MULTI_SZ", "a\\0", REG_MULTI_SZ, multi("a")),
    ("REG_MULTI_SZ", "\\0", REG_MULTI_SZ, b"\0\0\0\0"),
    ("REG_MULTI_SZ", "a\\\\0b", REG_MULTI_SZ, multi("a\\", "b")),
]


@pytest.mark.parametrize("t,d,want_type,want", ACCEPTED)
def test_add_data_accepted(run_reg, stored, t, d, want_type, want):
    args = ["add", K, "/v", "V"]
    if t is not None:
        args += ["/t", t]
    if d is not None:
        args += ["/d", d]
    assert run_reg(*args, "/f") == (0, OK, "")
    assert stored() == {"V": (want_type, want)}


MULTI_SEP_ACCEPTED = [
    ("#", "three#little#strings", multi("three", "little", "strings")),
    ("#", "threelittlestrings", multi("threelittlestrings")),
    ("#", "a#", multi("a")),
    ("#", "#", b"\0\0\0\0"),
    # With /s, the two characters \0 are text.
    ("#", "two\\0#strings", multi("two\\0", "strings")),
    ("#", "two#\\0strings", multi("two", "\\0strings")),
    ("#", "two\\0\\0strings", multi("two\\0\\0strings")),
    ("§", "a§b", multi("a", "b")),
]


@pytest.mark.parametrize("sep,d,want", MULTI_SEP_ACCEPTED)
def test_add_multi_sz_separator(run_reg, stored, sep, d, want):
    ok(run_reg, "add", K, "/v", "M", "/t", "REG_MULTI_SZ", "/s", sep, "/d", d, "/f")
    assert stored() == {"M": (REG_MULTI_SZ, want)}


NUMBER = "ERROR: The option [/d] must be followed by a valid numeric value.\n"
HEX = "ERROR: The option [/d] must be followed by a valid hexadecimal value.\n"
STRING = "ERROR: The option [/d] must be followed by a valid string.\n"
REJECTED = [
    (["/t", "REG_DWORD", "/d", "zzz"], NUMBER),
    (["/t", "REG_DWORD", "/d", "deadbeef"], NUMBER),
    (["/t", "REG_DWORD", "/d", "123xyz"], NUMBER),
    (["/t", "reg_dword", "/d", "0xabcdefg"], NUMBER),
    (["/t", "REG_DWORD", "/d", "-1"], NUMBER),
    (["/t", "REG_DWORD", "/d", "-0x1"], NUMBER),
    (["/t", "REG_dword", "/d", "0x01ffffffff"], NUMBER),
    (["/t", "REG_DWORD", "/d", "4294967296"], NUMBER),
    (["/t", "REG_DWORD", "/d", "00x123"], NUMBER),
    (["/t", "REG_DWORD", "/d", "0x"], NUMBER),
    (["/t", "REG_DWORD", "/d", ""], NUMBER),
    (["/t", "REG_DWORD", "/d", "1x5"], NUMBER),
    (["/t", "REG_DWORD_BIG_ENDIAN", "/d", "xyz"], NUMBER),
    (["/t", "REG_QWORD", "/d", "zzz"], NUMBER),
    (["/t", "REG_QWORD", "/d", "deadbeef"], NUMBER),
    (["/t", "REG_QWORD", "/d", "123xyz"], NUMBER),
    (["/t", "reg_qword", "/d", "0xabcdefg"], NUMBER),
    (["/t", "REG_QWORD", "/d", "-0x1"], NUMBER),
    (["/t", "REG_QWORD", "/d", "-2"], NUMBER),
    (["/t", "REG_qword", "/d", "0x01ffffffffffffffff"], NUMBER),
    (["/t", "REG_QWORD", "/d", "18446744073709551616"], NUMBER),
    (["/t", "REG_QWORD", "/d", "00x123"], NUMBER),
    (["/t", "REG_BINARY", "/d", "0xDeAdBeEf"], HEX),
    (["/t", "REG_BINARY", "/d", "x01"], HEX),
    (["/t", "REG_BINARY", "/d", "01x"], HEX),
    (["/t", "REG_BINARY", "/d", "de ad"], HEX),
    (["/t", "REG_BINARY", "/d", "de,ad"], HEX),
    (["/t", "REG_MULTI_SZ", "/s", "#", "/d", "##"], STRING),
    (["/t", "REG_MULTI_SZ", "/s", "#", "/d", "two##strings"], STRING),
    (["/t", "REG_MULTI_SZ", "/s", "#", "/d", "#a"], STRING),
    (["/t", "REG_MULTI_SZ", "/s", "#", "/d", "a##"], STRING),
    (["/t", "REG_MULTI_SZ", "/d", "\\0a"], STRING),
    (["/t", "REG_MULTI_SZ", "/d", "two\\0\\0strings"], STRING),
    (["/t", "REG_DWORD"], "ERROR: Invalid command-line parameters: the option [/d] is "
                          "required for REG_DWORD.\n"),
    (["/t", "REG_DWORD_BIG_ENDIAN"], "ERROR: Invalid command-line parameters: the option [/d] "
                                     "is required for REG_DWORD_BIG_ENDIAN.\n"),
    (["/t", "REG_LINK", "/d", "abc"], "ERROR: Unsupported registry data type [REG_LINK].\n"),
    (["/t", "", "/d", "WineTest"], "ERROR: Unsupported registry data type [].\n"),
    (["/t", "REG_FOO", "/d", "x"], "ERROR: Unsupported registry data type [REG_FOO].\n"),
    (["/t", "REG_RESOURCE_LIST", "/d", "x"],
     "ERROR: Unsupported registry data type [REG_RESOURCE_LIST].\n"),
    (["/t", "4", "/d", "1"], "ERROR: Unsupported registry data type [4].\n"),
]


@pytest.mark.parametrize("args,msg", REJECTED)
def test_add_data_rejected_changes_nothing(run_reg, snapshot, args, msg):
    ok(run_reg, "add", K, "/v", "Other", "/d", "o", "/f")
    before = snapshot()
    # A new key is not created either: the data is checked first.
    assert run_reg("add", K + r"\New", "/v", "V", *args, "/f") == (1, "", msg)
    assert run_reg("add", K, "/v", "V", *args, "/f") == (1, "", msg)
    assert snapshot() == before


def test_add_value_names_are_literal(run_reg, stored):
    for name in ["string\\04", "\\0", "count/up", "\\foo\\bar", 'Quote"Back\\slash']:
        ok(run_reg, "add", K, "/v", name, "/d", "x", "/f")
    assert list(stored()) == ["string\\04", "\\0", "count/up", "\\foo\\bar", 'Quote"Back\\slash']


def test_add_ve_and_empty_v_name_both_mean_default(run_reg, stored):
    ok(run_reg, "add", K, "/ve", "/d", "WineTEST", "/f")
    assert stored() == {"": (REG_SZ, sz("WineTEST"))}
    ok(run_reg, "add", K, "/v", "", "/d", "other", "/f")
    assert stored() == {"": (REG_SZ, sz("other"))}


def test_add_overwrite_prompt(run_reg, stored):
    ok(run_reg, "add", K, "/v", "MySz", "/d", "old", "/f")
    prompt = "Value MySz exists, overwrite(Yes/No)? "
    # No, end of input, and answers that are not an answer three times: nothing changes.
    assert run_reg("add", K, "/v", "MySz", "/d", "new", input="n\n") == (0, prompt + "\n" + CANCEL, "")
    assert run_reg("add", K, "/v", "MySz", "/d", "new") == (0, prompt + "\n" + CANCEL, "")
    assert run_reg("add", K, "/v", "MySz", "/d", "new", input="") == (0, prompt + "\n" + CANCEL, "")
    assert run_reg("add", K, "/v", "MySz", "/d", "new", input="x\nmaybe\n\n") == (
        0, (prompt + "\n") * 3 + CANCEL, "")
    # All is no answer to a Yes/No question: asked again, then the input ends.
    assert run_reg("add", K, "/v", "MySz", "/d", "new", input="All\n") == (
        0, (prompt + "\n") * 2 + CANCEL, "")
    assert stored() == {"MySz": (REG_SZ, sz("old"))}
    # Yes, in any case, after a wrong answer too.
    assert run_reg("add", K, "/v", "MySz", "/d", "new", input="what\nYES\n") == (
        0, (prompt + "\n") * 2 + OK, "")
    assert stored() == {"MySz": (REG_SZ, sz("new"))}
    assert run_reg("add", K, "/v", "MySz", "/d", "newer", input="y") == (0, prompt + "\n" + OK, "")
    assert stored() == {"MySz": (REG_SZ, sz("newer"))}


def test_add_overwrite_prompt_for_default_value(run_reg):
    ok(run_reg, "add", K, "/ve", "/d", "d", "/f")
    assert run_reg("add", K, "/ve", "/d", "x", input="n\n") == (
        0, "Value (Default) exists, overwrite(Yes/No)? \n" + CANCEL, "")


def test_add_non_ascii_names_and_data(run_reg, stored):
    key = K + "\\Tést日本"
    ok(run_reg, "add", key, "/v", "名前", "/d", "データ é €", "/f")
    ok(run_reg, "add", key, "/v", "Multi", "/t", "REG_MULTI_SZ", "/s", "·", "/d", "α·β", "/f")
    assert ok(run_reg, "query", key) == (
        f"\n{LK}\\Tést日本\n    名前    REG_SZ    データ é €\n"
        "    Multi    REG_MULTI_SZ    α\\0β\n\n")
    assert stored(key, LK + "\\Tést日本") == {
        "名前": (REG_SZ, sz("データ é €")), "Multi": (REG_MULTI_SZ, multi("α", "β"))}


def test_add_invalid_utf8_is_refused(run_reg, snapshot):
    before = snapshot()
    for args in ([K, "/v", b"\xff".decode("utf-8", "surrogateescape"), "/f"],
                 [K + b"\\\xe9".decode("utf-8", "surrogateescape"), "/f"],
                 [K, "/v", "x", "/d", b"caf\xe9".decode("utf-8", "surrogateescape"), "/f"]):
        p = run_reg("add", *[os.fsencode(a) for a in args])
        assert p == (1, "", "ERROR: Invalid argument: not valid UTF-8.\n")
    assert snapshot() == before


# --- QUERY -----------------------------------------------------------------------------------


@pytest.fixture
def query_tree(run_reg):
    """KEY: Test1, Test2, Wine; KEY\\subkey: Test3, Test4, Wine (Wine's query test data)."""
    ok(run_reg, "add", K, "/v", "Test1", "/d", "Hello, World", "/f")
    ok(run_reg, "add", K, "/v", "Test2", "/t", "REG_DWORD", "/d", "0x123", "/f")
    ok(run_reg, "add", K, "/v", "Wine", "/d", "First instance", "/f")
    sub = K + r"\subkey"
    ok(run_reg, "add", sub, "/v", "Test3", "/d", "Some string data", "/f")
    ok(run_reg, "add", sub, "/v", "Test4", "/t", "REG_DWORD", "/d", "0xabc", "/f")
    ok(run_reg, "add", sub, "/v", "Wine", "/d", "Second instance", "/f")


def test_query_missing_key(run_reg):
    assert run_reg("query", K) == (1, "", NOT_FOUND)


def test_query_values(run_reg):
    ok(run_reg, "add", K, "/v", "Test1", "/d", "Hello, World", "/f")
    ok(run_reg, "add", K, "/v", "Test2", "/t", "REG_DWORD", "/d", "0x123", "/f")
    assert run_reg("query", K) == (
        0, f"\n{LK}\n    Test1    REG_SZ    Hello, World\n    Test2    REG_DWORD    0x123\n\n", "")
    assert run_reg("query", K, "/v", "Test1") == (
        0, f"\n{LK}\n    Test1    REG_SZ    Hello, World\n\n", "")
    assert run_reg("query", K, "/v", "Missing") == (1, "", NOT_FOUND)


def test_query_values_and_subkeys(run_reg, query_tree):
    assert ok(run_reg, "query", K) == (
        f"\n{LK}\n"
        "    Test1    REG_SZ    Hello, World\n"
        "    Test2    REG_DWORD    0x123\n"
        "    Wine    REG_SZ    First instance\n\n"
        f"{LK}\\subkey\n")
    assert ok(run_reg, "query", K + r"\subkey", "/v", "Test4") == (
        f"\n{LK}\\subkey\n    Test4    REG_DWORD    0xabc\n\n")


def test_query_recursive(run_reg, query_tree):
    expected = (
        f"\n{LK}\n"
        "    Test1    REG_SZ    Hello, World\n"
        "    Test2    REG_DWORD    0x123\n"
        "    Wine    REG_SZ    First instance\n\n"
        f"{LK}\\subkey\n"
        "    Test3    REG_SZ    Some string data\n"
        "    Test4    REG_DWORD    0xabc\n"
        "    Wine    REG_SZ    Second instance\n\n")
    assert ok(run_reg, "query", K, "/s") == expected
    assert ok(run_reg, "query", K + "\\", "/s") == expected


def test_query_value_recursive(run_reg, query_tree):
    assert run_reg("query", K, "/v", "Wine", "/s") == (0, (
        f"\n{LK}\n"
        "    Wine    REG_SZ    First instance\n\n"
        f"{LK}\\subkey\n"
        "    Wine    REG_SZ    Second instance\n\n"
        "End of search: 2 match(es) found.\n"), "")
    assert run_reg("query", K, "/v", "Test3", "/s") == (0, (
        f"\n{LK}\\subkey\n    Test3    REG_SZ    Some string data\n\n"
        "End of search: 1 match(es) found.\n"), "")
    assert run_reg("query", K, "/v", "Nothing", "/s") == (
        1, "\nEnd of search: 0 match(es) found.\n", "")


def test_query_default_value(run_reg, query_tree):
    # Not set: shown as such, and a success.
    assert run_reg("query", K, "/ve") == (
        0, f"\n{LK}\n    (Default)    REG_SZ    (value not set)\n\n", "")
    ok(run_reg, "add", K + r"\subkey", "/ve", "/d", "Empty", "/f")
    assert run_reg("query", K + r"\subkey", "/ve") == (
        0, f"\n{LK}\\subkey\n    (Default)    REG_SZ    Empty\n\n", "")
    assert run_reg("query", K, "/ve", "/s") == (0, (
        f"\n{LK}\\subkey\n    (Default)    REG_SZ    Empty\n\n"
        "End of search: 1 match(es) found.\n"), "")
    assert ok(run_reg, "query", K + r"\subkey") == (
        f"\n{LK}\\subkey\n"
        "    Test3    REG_SZ    Some string data\n"
        "    Test4    REG_DWORD    0xabc\n"
        "    Wine    REG_SZ    Second instance\n"
        "    (Default)    REG_SZ    Empty\n\n")


def test_query_empty_key(run_reg):
    ok(run_reg, "add", K, "/v", "x", "/f")
    ok(run_reg, "delete", K, "/v", "x", "/f")
    assert run_reg("query", K) == (0, "\n", "")
    assert run_reg("query", K, "/s") == (0, "\n", "")


def test_query_subkeys_only(run_reg):
    for i in (3, 1, 4, 2):
        ok(run_reg, "add", K + rf"\subkey{i}", "/v", "x", "/f")
        ok(run_reg, "delete", K + rf"\subkey{i}", "/va", "/f")
    assert ok(run_reg, "query", K) == "\n" + "".join(f"{LK}\\subkey{i}\n" for i in range(1, 5))
    assert ok(run_reg, "query", K, "/s") == "\n" + "".join(
        f"{LK}\\subkey{i}\n\n" for i in range(1, 5))


@pytest.fixture
def typed_values(run_reg):
    for args in (
        ["/v", "MySz", "/d", "Hello World"],
        ["/v", "MyExpand", "/t", "REG_EXPAND_SZ", "/d", "%SystemRoot%\\system32"],
        ["/v", "MyMulti", "/t", "REG_MULTI_SZ", "/d", "one\\0two\\0three"],
        ["/v", "MyDword", "/t", "REG_DWORD", "/d", "0x1234abcd"],
        ["/v", "MyQword", "/t", "REG_QWORD", "/d", "0x123456789abcdef0"],
        ["/v", "MyBinary", "/t", "REG_BINARY", "/d", "deadbeef00112233"],
        ["/v", "MyNone", "/t", "REG_NONE", "/d", "xyz"],
        ["/v", "MyBE", "/t", "REG_DWORD_BIG_ENDIAN", "/d", "0x01020304"],
        ["/v", "EmptyBin", "/t", "REG_BINARY"],
        ["/v", "EmptySz", "/d", ""],
        ["/v", "SmallQ", "/t", "REG_QWORD", "/d", "1"],
    ):
        ok(run_reg, "add", K, *args, "/f")


TYPED_LINES = [
    ("MySz", "REG_SZ", 1, "Hello World"),
    ("MyExpand", "REG_EXPAND_SZ", 2, "%SystemRoot%\\system32"),
    ("MyMulti", "REG_MULTI_SZ", 7, "one\\0two\\0three"),
    ("MyDword", "REG_DWORD", 4, "0x1234abcd"),
    ("MyQword", "REG_QWORD", 11, "0x123456789abcdef0"),
    ("MyBinary", "REG_BINARY", 3, "DEADBEEF00112233"),
    ("MyNone", "REG_NONE", 0, "780079007A000000"),
    ("MyBE", "REG_DWORD_BIG_ENDIAN", 5, "0x1020304"),
    ("EmptyBin", "REG_BINARY", 3, ""),
    ("EmptySz", "REG_SZ", 1, ""),
    ("SmallQ", "REG_QWORD", 11, "0x1"),
]


def test_query_every_type(run_reg, typed_values):
    assert ok(run_reg, "query", K) == f"\n{LK}\n" + "".join(
        f"    {n}    {t}    {d}\n" for n, t, _, d in TYPED_LINES) + "\n"


def test_query_numeric_types(run_reg, typed_values):
    assert ok(run_reg, "query", K, "/z") == f"\n{LK}\n" + "".join(
        f"    {n}    {t} ({num})    {d}\n" for n, t, num, d in TYPED_LINES) + "\n"
    assert ok(run_reg, "query", K, "/v", "MyDword", "/z") == (
        f"\n{LK}\n    MyDword    REG_DWORD (4)    0x1234abcd\n\n")


def test_query_multi_sz_separator(run_reg, typed_values):
    assert ok(run_reg, "query", K, "/v", "MyMulti", "/se", "#") == (
        f"\n{LK}\n    MyMulti    REG_MULTI_SZ    one#two#three\n\n")
    assert ok(run_reg, "query", K, "/v", "MyMulti", "/se", "€") == (
        f"\n{LK}\n    MyMulti    REG_MULTI_SZ    one€two€three\n\n")


def test_query_unusual_stored_data(run_reg, workdir):
    # Types and sizes reg add cannot make, written through a .reg file.
    (workdir / "odd.reg").write_bytes(
        b"REGEDIT4\r\n\r\n[HKEY_CURRENT_USER\\Software\\IMSTest]\r\n"
        b'"Link"=hex(6):01,02\r\n"T100"=hex(100):ff,00\r\n"ShortDw"=hex(4):01,02\r\n'
        b'"EmptyDw"=hex(4):\r\n"ResList"=hex(8):0a\r\n"Nl"="a\\nb"\r\n'
        b'"EmbeddedNul"=hex(1):61,00,62\r\n'
        b'"OneString"=hex(7):61,00\r\n')
    ok(run_reg, "import", "odd.reg")
    assert ok(run_reg, "query", K) == (
        f"\n{LK}\n"
        "    Link    REG_LINK    0102\n"
        "    T100    0x100    FF00\n"
        "    ShortDw    REG_DWORD    0102\n"
        "    EmptyDw    REG_DWORD    \n"
        "    ResList    REG_RESOURCE_LIST    0A\n"
        "    Nl    REG_SZ    a\nb\n"
        "    EmbeddedNul    REG_SZ    a\n"
        "    OneString    REG_MULTI_SZ    a\n\n")
    assert ok(run_reg, "query", K, "/v", "t100", "/z") == f"\n{LK}\n    t100    0x100 (256)    FF00\n\n"


@pytest.fixture
def search_tree(run_reg):
    ok(run_reg, "add", K, "/v", "Greeting", "/d", "Hello World", "/f")
    ok(run_reg, "add", K, "/v", "Number", "/t", "REG_DWORD", "/d", "0x10", "/f")
    ok(run_reg, "add", K + r"\HelloKey", "/v", "Other", "/d", "nothing", "/f")
    ok(run_reg, "add", K + r"\Plain\Deep", "/v", "hello", "/t", "REG_BINARY", "/d", "01", "/f")


def test_query_search_everywhere(run_reg, search_tree):
    assert run_reg("query", K, "/f", "hello", "/s") == (0, (
        f"\n{LK}\n    Greeting    REG_SZ    Hello World\n\n"
        f"{LK}\\HelloKey\n"
        f"{LK}\\Plain\\Deep\n    hello    REG_BINARY    01\n\n"
        "End of search: 3 match(es) found.\n"), "")
    # Without /s: the key's own values and the names of its subkeys.
    assert run_reg("query", K, "/f", "hello") == (0, (
        f"\n{LK}\n    Greeting    REG_SZ    Hello World\n\n"
        f"{LK}\\HelloKey\n"
        "End of search: 2 match(es) found.\n"), "")


def test_query_search_fields_and_modes(run_reg, search_tree):
    assert run_reg("query", K, "/f", "hello", "/s", "/k") == (0, (
        f"\n{LK}\\HelloKey\nEnd of search: 1 match(es) found.\n"), "")
    assert run_reg("query", K, "/f", "hello", "/s", "/d") == (0, (
        f"\n{LK}\n    Greeting    REG_SZ    Hello World\n\nEnd of search: 1 match(es) found.\n"), "")
    assert run_reg("query", K, "/f", "hello", "/s", "/v") == (0, (
        f"\n{LK}\\Plain\\Deep\n    hello    REG_BINARY    01\n\n"
        "End of search: 1 match(es) found.\n"), "")
    assert run_reg("query", K, "/f", "Hello", "/s", "/c")[1].endswith(
        "End of search: 2 match(es) found.\n")
    assert run_reg("query", K, "/f", "hello", "/s", "/e") == (0, (
        f"\n{LK}\\Plain\\Deep\n    hello    REG_BINARY    01\n\n"
        "End of search: 1 match(es) found.\n"), "")
    assert run_reg("query", K, "/f", "H*o W?rld", "/e", "/d") == (0, (
        f"\n{LK}\n    Greeting    REG_SZ    Hello World\n\nEnd of search: 1 match(es) found.\n"), "")
    assert run_reg("query", K, "/f", "0x10", "/d", "/e") == (0, (
        f"\n{LK}\n    Number    REG_DWORD    0x10\n\nEnd of search: 1 match(es) found.\n"), "")
    assert run_reg("query", K, "/f", "absent", "/s") == (
        1, "\nEnd of search: 0 match(es) found.\n", "")


def test_query_type_filter(run_reg, search_tree):
    assert run_reg("query", K, "/t", "REG_DWORD", "/s") == (0, (
        f"\n{LK}\n    Number    REG_DWORD    0x10\n\nEnd of search: 1 match(es) found.\n"), "")
    assert run_reg("query", K, "/t", "reg_binary,REG_DWORD", "/s") == (0, (
        f"\n{LK}\n    Number    REG_DWORD    0x10\n\n"
        f"{LK}\\Plain\\Deep\n    hello    REG_BINARY    01\n\n"
        "End of search: 2 match(es) found.\n"), "")
    assert run_reg("query", K, "/t", "REG_SZ", "/f", "nothing", "/s") == (0, (
        f"\n{LK}\\HelloKey\n    Other    REG_SZ    nothing\n\n"
        "End of search: 1 match(es) found.\n"), "")
    assert run_reg("query", K, "/t", "REG_BOGUS") == (
        1, "", "ERROR: Unsupported registry data type [REG_BOGUS].\n")


# --- DELETE ----------------------------------------------------------------------------------


@pytest.fixture
def delete_tree(run_reg):
    ok(run_reg, "add", K, "/ve", "/d", "default", "/f")
    ok(run_reg, "add", K, "/v", "A", "/d", "a", "/f")
    ok(run_reg, "add", K, "/v", "count/up", "/d", "c", "/f")
    ok(run_reg, "add", K, "/v", "\\foo\\bar", "/d", "f", "/f")
    ok(run_reg, "add", K + r"\Sub", "/v", "S", "/d", "s", "/f")


def test_delete_value(run_reg, stored, delete_tree):
    assert run_reg("delete", K, "/v", "A", "/f") == (0, OK, "")
    assert run_reg("delete", K, "/v", "A", "/f") == (1, "", NOT_FOUND)
    assert run_reg("delete", K, "/v", "count/up", "/f") == (0, OK, "")
    assert run_reg("delete", K, "/v", "\\foo\\bar", "/f") == (0, OK, "")
    assert stored() == {"": (REG_SZ, sz("default"))}
    assert run_reg("delete", K, "/ve", "/f") == (0, OK, "")
    assert run_reg("delete", K, "/ve", "/f") == (1, "", NOT_FOUND)
    assert stored() == {}
    assert ok(run_reg, "query", K + r"\Sub", "/v", "S") == f"\n{LK}\\Sub\n    S    REG_SZ    s\n\n"


def test_delete_all_values_keeps_subkeys(run_reg, delete_tree):
    assert run_reg("delete", K, "/va", "/f") == (0, OK, "")
    assert ok(run_reg, "query", K) == f"\n{LK}\\Sub\n"
    assert run_reg("delete", K, "/va", "/f") == (0, OK, "")
    assert ok(run_reg, "query", K + r"\Sub") == f"\n{LK}\\Sub\n    S    REG_SZ    s\n\n"


def test_delete_key(run_reg, delete_tree):
    ok(run_reg, "add", K + r"\Sub\Deeper\Deepest", "/f")
    assert run_reg("delete", K, "/f") == (0, OK, "")
    assert run_reg("query", K) == (1, "", NOT_FOUND)
    assert run_reg("query", K + r"\Sub") == (1, "", NOT_FOUND)
    assert run_reg("delete", K, "/f") == (1, "", NOT_FOUND)
    assert ok(run_reg, "query", r"HKCU\Software") == "\n"


def test_delete_missing_value_in_missing_key(run_reg):
    assert run_reg("delete", K, "/v", "x", "/f") == (1, "", NOT_FOUND)
    assert run_reg("delete", K, "/va") == (1, "", NOT_FOUND)


@pytest.mark.parametrize("args,prompt", [
    ([], f"Permanently delete the registry key {LK} (Yes/No)? "),
    (["/v", "A"], "Delete the registry value A (Yes/No)? "),
    (["/ve"], "Delete the registry value (Default) (Yes/No)? "),
    (["/va"], f"Delete all values under the registry key {LK} (Yes/No)? "),
])
def test_delete_prompts(run_reg, snapshot, delete_tree, args, prompt):
    before = snapshot()
    for answer in (None, "", "n\n", "No\n", "q\nw\ne\n"):
        rc, out, err = run_reg("delete", K, *args, input=answer)
        assert (rc, err) == (0, "")
        assert out.endswith(prompt + "\n" + CANCEL)
        assert snapshot() == before
    assert run_reg("delete", K, *args, input="y\n") == (0, prompt + "\n" + OK, "")
    assert snapshot() != before


@pytest.mark.parametrize("key,path", [
    ("HKCU", "HKEY_CURRENT_USER"), ("HKLM", "HKEY_LOCAL_MACHINE"),
    ("HKEY_USERS", "HKEY_USERS"), ("hkcr", "HKEY_CLASSES_ROOT"), ("HKCC", "HKEY_CURRENT_CONFIG"),
])
def test_delete_root_is_refused(run_reg, snapshot, delete_tree, key, path):
    ok(run_reg, "add", r"HKLM\Software\IMSTest", "/v", "M", "/d", "m", "/f")
    before = snapshot()
    msg = f"ERROR: Access is denied. The root key {path} cannot be deleted.\n"
    assert run_reg("delete", key, "/f") == (1, "", msg)
    assert run_reg("delete", key, input="y\n") == (1, "", msg)
    assert run_reg("delete", key + "\\", "/f") == (1, "", bad_key("DELETE"))
    assert snapshot() == before


# --- COPY ------------------------------------------------------------------------------------

SRC, DST = K + r"\Src", K + r"\Dst"
LSRC, LDST = LK + r"\Src", LK + r"\Dst"


@pytest.fixture
def copy_tree(run_reg):
    ok(run_reg, "add", SRC, "/ve", "/d", "def", "/f")
    ok(run_reg, "add", SRC, "/v", "A", "/d", "a", "/f")
    ok(run_reg, "add", SRC, "/v", "B", "/t", "REG_DWORD", "/d", "1", "/f")
    ok(run_reg, "add", SRC, "/v", "Empty", "/t", "REG_BINARY", "/f")
    ok(run_reg, "add", SRC, "/v", "M", "/t", "REG_MULTI_SZ", "/d", "x\\0y", "/f")
    ok(run_reg, "add", SRC + r"\Sub1", "/v", "C", "/d", "c", "/f")
    ok(run_reg, "add", SRC + r"\Sub1\Deep", "/v", "D", "/t", "REG_BINARY", "/d", "01", "/f")
    ok(run_reg, "add", SRC + r"\Sub2", "/f")


def tree(run_reg, key, long_key):
    """query /s of key with its own path taken out, to compare trees at two places."""
    return ok(run_reg, "query", key, "/s").replace(long_key, "<KEY>")


def test_copy_values_only(run_reg, stored, copy_tree):
    assert run_reg("copy", SRC, DST) == (0, OK, "")
    assert stored(DST, LDST) == stored(SRC, LSRC)
    assert ok(run_reg, "query", DST) == (
        f"\n{LDST}\n    (Default)    REG_SZ    def\n    A    REG_SZ    a\n"
        "    B    REG_DWORD    0x1\n    Empty    REG_BINARY    \n"
        "    M    REG_MULTI_SZ    x\\0y\n\n")


def test_copy_recursive(run_reg, workdir, copy_tree):
    assert run_reg("copy", SRC, DST, "/s", "/f") == (0, OK, "")
    assert tree(run_reg, DST, LDST) == tree(run_reg, SRC, LSRC)
    ok(run_reg, "export", SRC, "src.reg", "/y")
    ok(run_reg, "export", DST, "dst.reg", "/y")
    src = parse_reg((workdir / "src.reg").read_bytes())
    dst = parse_reg((workdir / "dst.reg").read_bytes())
    assert {k.replace(LSRC, "X"): v for k, v in src.items()} == {
        k.replace(LDST, "X"): v for k, v in dst.items()}


def test_copy_unusual_types(run_reg, workdir):
    (workdir / "odd.reg").write_bytes(
        "Windows Registry Editor Version 5.00\r\n\r\n[HKEY_CURRENT_USER\\Software\\IMSTest\\Src]\r\n"
        '"T100"=hex(100):ff\r\n"Abcd"=hex(abcd):\r\n"Sz0"=hex(1):\r\n"Nul"=hex(1):61,00,00,00,62,00\r\n'
        .encode("utf-16-le").join([b"\xff\xfe", b""]))
    ok(run_reg, "import", "odd.reg")
    ok(run_reg, "add", DST, "/v", "Nul", "/d", "a", "/f")
    # Compare sees the bytes: the copy is exact (export and query stop strings at a NUL).
    assert run_reg("compare", SRC, DST)[0] == 2
    ok(run_reg, "copy", SRC, DST, "/f")
    assert run_reg("compare", SRC, DST) == (0, "\nResult Compared: Identical\n", "")
    assert ok(run_reg, "query", DST) == (
        f"\n{LDST}\n    Nul    REG_SZ    a\n    T100    0x100    FF\n"
        "    Abcd    0xabcd    \n    Sz0    REG_SZ    \n\n")


def test_copy_overwrites_and_keeps_destination_only_values(run_reg, stored, copy_tree):
    ok(run_reg, "add", DST, "/v", "A", "/d", "old", "/f")
    ok(run_reg, "add", DST, "/v", "Mine", "/d", "kept", "/f")
    ok(run_reg, "add", DST + r"\OwnKey", "/f")
    ok(run_reg, "copy", SRC, DST, "/f")
    got = stored(DST, LDST)
    assert got["A"] == (REG_SZ, sz("a"))
    assert got["Mine"] == (REG_SZ, sz("kept"))
    assert ok(run_reg, "query", DST + r"\OwnKey", "/ve").endswith("(Default)    REG_SZ    \n\n")
    assert run_reg("query", DST + r"\Sub1") == (1, "", NOT_FOUND)


def test_copy_prompts_per_value(run_reg, stored, copy_tree):
    ok(run_reg, "add", DST, "/ve", "/d", "old default", "/f")
    ok(run_reg, "add", DST, "/v", "A", "/d", "old", "/f")
    ok(run_reg, "add", DST, "/v", "B", "/d", "old", "/f")

    def prompt(name):
        return f"Value {name} exists in {LDST}, overwrite(Yes/No/All)? \n"

    # No to (Default), yes to A, no to B.
    assert run_reg("copy", SRC, DST, input="n\ny\nn\n") == (
        0, prompt("(Default)") + prompt("A") + prompt("B") + OK, "")
    got = stored(DST, LDST)
    assert got[""] == (REG_SZ, sz("old default"))
    assert got["A"] == (REG_SZ, sz("a"))
    assert got["B"] == (REG_SZ, sz("old"))
    assert got["M"] == (REG_MULTI_SZ, multi("x", "y"))
    # All: no more questions.
    assert run_reg("copy", SRC, DST, input="a\n") == (0, prompt("(Default)") + OK, "")
    assert stored(DST, LDST) == stored(SRC, LSRC)


def test_copy_end_of_input_answers_no(run_reg, stored, copy_tree):
    ok(run_reg, "add", DST, "/v", "A", "/d", "old", "/f")
    rc, out, err = run_reg("copy", SRC, DST)
    assert (rc, err) == (0, "")
    assert stored(DST, LDST)["A"] == (REG_SZ, sz("old"))


def test_copy_recursive_prompts_in_subkeys(run_reg, stored, copy_tree):
    ok(run_reg, "add", DST + r"\Sub1", "/v", "C", "/d", "old", "/f")
    assert run_reg("copy", SRC, DST, "/s", input="n\n") == (
        0, f"Value C exists in {LDST}\\Sub1, overwrite(Yes/No/All)? \n" + OK, "")
    assert stored(DST + r"\Sub1", LDST + r"\Sub1") == {"C": (REG_SZ, sz("old"))}
    assert ok(run_reg, "query", DST + r"\Sub1\Deep", "/v", "D").endswith("01\n\n")


@pytest.mark.parametrize("dst", [SRC, SRC + "\\", K.lower() + r"\SRC", "HKEY_CURRENT_USER" + SRC[4:]])
def test_copy_onto_itself(run_reg, snapshot, copy_tree, dst):
    before = snapshot()
    assert run_reg("copy", SRC, dst, "/s", "/f") == (
        1, "", "ERROR: The source and destination keys cannot be the same.\n")
    assert snapshot() == before


def test_copy_missing_source(run_reg, snapshot):
    ok(run_reg, "add", K, "/f")
    before = snapshot()
    assert run_reg("copy", K + r"\Nope", DST, "/f") == (1, "", NOT_FOUND)
    assert snapshot() == before


def test_copy_into_own_subtree(run_reg, copy_tree):
    inner = SRC + r"\Sub2\Copy"
    before = tree(run_reg, SRC, LSRC)
    assert run_reg("copy", SRC, inner, "/s", "/f") == (0, OK, "")
    # The copy is the source as it was: it does not contain itself.
    assert tree(run_reg, inner, LSRC + r"\Sub2\Copy") == before


def test_copy_from_own_subtree(run_reg, copy_tree):
    ok(run_reg, "copy", SRC + r"\Sub1", SRC, "/s", "/f")
    assert ok(run_reg, "query", SRC, "/v", "C") == f"\n{LSRC}\n    C    REG_SZ    c\n\n"
    assert ok(run_reg, "query", SRC + r"\Deep", "/v", "D") == (
        f"\n{LSRC}\\Deep\n    D    REG_BINARY    01\n\n")


# --- EXPORT and IMPORT -----------------------------------------------------------------------


def test_export_file_format(run_reg, workdir):
    ok(run_reg, "add", K, "/v", "MySz", "/d", "Hello World", "/f")
    ok(run_reg, "add", K + r"\Sub1", "/v", "Deep", "/d", "deep value", "/f")
    assert run_reg("export", K, "test.reg") == (0, OK, "")
    data = (workdir / "test.reg").read_bytes()
    assert data == ("\ufeffWindows Registry Editor Version 5.00\r\n\r\n"
                    f"[{LK}]\r\n\"MySz\"=\"Hello World\"\r\n\r\n"
                    f"[{LK}\\Sub1]\r\n\"Deep\"=\"deep value\"\r\n\r\n").encode("utf-16-le")
    assert oct(os.stat(workdir / "test.reg").st_mode & 0o777) == oct(0o666 & ~current_umask())


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_export_without_reg_extension_and_repeated_y(run_reg, workdir):
    ok(run_reg, "add", K, "/f")
    assert run_reg("export", K, "foo", "/y", "/y") == (0, OK, "")
    assert (workdir / "foo").read_bytes().startswith(b"\xff\xfeW\0")


def test_export_missing_key(run_reg, workdir):
    assert run_reg("export", K, "x.reg", "/y") == (1, "", NOT_FOUND)
    assert not (workdir / "x.reg").exists()


def test_export_existing_file_prompt(run_reg, workdir):
    ok(run_reg, "add", K, "/v", "A", "/d", "a", "/f")
    f = workdir / "exists.reg"
    f.write_bytes(b"old")
    prompt = "File exists.reg already exists. Overwrite (Yes/No)? \n"
    assert run_reg("export", K, "exists.reg") == (0, prompt + CANCEL, "")
    assert run_reg("export", K, "exists.reg", input="no\n") == (0, prompt + CANCEL, "")
    assert f.read_bytes() == b"old"
    assert run_reg("export", K, "exists.reg", input="y\n") == (0, prompt + OK, "")
    assert f.read_bytes().startswith(b"\xff\xfe")
    f.write_bytes(b"old")
    assert run_reg("export", K, "exists.reg", "/y") == (0, OK, "")
    assert f.read_bytes().startswith(b"\xff\xfe")


def test_export_into_missing_directory(run_reg):
    ok(run_reg, "add", K, "/f")
    rc, out, err = run_reg("export", K, "no/such/dir/x.reg", "/y")
    assert (rc, out) == (1, "")
    assert err.startswith("ERROR: ")


def test_export_import_round_trip(run_reg, workdir, typed_values, stored):
    ok(run_reg, "add", K + r"\Sub\Ünï", "/v", "名前", "/d", "データ", "/f")
    before = tree(run_reg, K, LK)
    values = stored()
    ok(run_reg, "export", K, "round.reg")
    ok(run_reg, "delete", K, "/f")
    assert run_reg("query", K) == (1, "", NOT_FOUND)
    assert run_reg("import", "round.reg") == (0, OK, "")
    assert tree(run_reg, K, LK) == before
    assert stored() == values


def test_import_regedit4_with_short_roots(run_reg, stored, workdir):
    (workdir / "imp4.reg").write_bytes(
        b"REGEDIT4\r\n\r\n[HKCU\\Software\\IMSTest]\r\n@=\"def\"\r\n"
        b"\"Str\"=\"caf\xe9 \\\"q\\\" \\\\ end\"\r\n\"Dw\"=dword:0000002a\r\n\"Bin\"=hex:01,02,03\r\n"
        b"\"Exp\"=hex(2):25,54,45,4d,50,25,00\r\n\"Multi\"=hex(7):61,00,62,00,00\r\n")
    assert run_reg("import", "imp4.reg") == (0, OK, "")
    assert ok(run_reg, "query", K) == (
        f"\n{LK}\n    (Default)    REG_SZ    def\n"
        "    Str    REG_SZ    café \"q\" \\ end\n    Dw    REG_DWORD    0x2a\n"
        "    Bin    REG_BINARY    010203\n    Exp    REG_EXPAND_SZ    %TEMP%\n"
        "    Multi    REG_MULTI_SZ    a\\0b\n\n")


def test_import_reports_skipped_lines_and_succeeds(run_reg, workdir):
    (workdir / "bad-lines.reg").write_bytes(
        b"REGEDIT4\r\n\r\n[HKCU\\Software\\IMSTest]\r\n\"Good\"=\"yes\"\r\n"
        b"\"Bad\"=dword:zz\r\n\"AlsoGood\"=dword:1\r\n")
    rc, out, err = run_reg("import", "bad-lines.reg")
    assert (rc, out) == (0, OK)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("reg: bad-lines.reg:5: ")
    assert ok(run_reg, "query", K) == (
        f"\n{LK}\n    Good    REG_SZ    yes\n    AlsoGood    REG_DWORD    0x1\n\n")


def test_import_missing_file(run_reg, ims_root):
    assert run_reg("import", "nosuch.reg") == (
        1, "", "ERROR: Error opening the file. There may be a disk or file system error.\n")


@pytest.mark.parametrize("body", [b"garbage\r\n[HKCU\\Software\\IMSTest]\r\n\"a\"=\"b\"\r\n",
                                  b"", b"R", b"\nREGEDIT4\r\n", b"regedit4\r\n",
                                  b"\xef\xbb\xbfREGEDIT4\r\n[HKCU\\Software\\IMSTest]\r\n"])
def test_import_invalid_header(run_reg, workdir, snapshot, body):
    before = snapshot()
    (workdir / "bad.reg").write_bytes(body)
    assert run_reg("import", "bad.reg") == (
        1, "", "ERROR: The specified file is not a registry script.\n")
    assert snapshot() == before


def test_import_fuzzy_header_imports_nothing(run_reg, workdir, snapshot):
    before = snapshot()
    (workdir / "fuzzy.reg").write_bytes(b"REGEDIT5\r\n[HKCU\\Software\\IMSTest]\r\n\"a\"=\"b\"\r\n")
    rc, out, err = run_reg("import", "fuzzy.reg")
    assert (rc, out) == (0, OK)
    assert err == "" or err.startswith("reg: fuzzy.reg:1: ")
    assert snapshot() == before


def test_import_view_switch(run_reg, workdir):
    (workdir / "v.reg").write_bytes(b"REGEDIT4\r\n[HKCU\\Software\\IMSTest]\r\n\"a\"=\"b\"\r\n")
    assert run_reg("import", "v.reg", "/reg:64") == (0, OK, "")
    assert ok(run_reg, "query", K, "/v", "a") == f"\n{LK}\n    a    REG_SZ    b\n\n"


# --- COMPARE ---------------------------------------------------------------------------------

C1, C2 = K + r"\C1", K + r"\C2"
LC1, LC2 = LK + r"\C1", LK + r"\C2"


@pytest.fixture
def compare_keys(run_reg):
    ok(run_reg, "add", C1, "/v", "Same", "/d", "s", "/f")
    ok(run_reg, "add", C2, "/v", "Same", "/d", "s", "/f")
    ok(run_reg, "add", C1 + r"\Sub", "/v", "X", "/d", "x", "/f")
    ok(run_reg, "add", C2 + r"\Sub", "/v", "X", "/d", "x", "/f")


def test_compare_identical(run_reg, compare_keys):
    assert run_reg("compare", C1, C2) == (0, "\nResult Compared: Identical\n", "")
    assert run_reg("compare", C1, C2, "/s") == (0, "\nResult Compared: Identical\n", "")
    assert run_reg("compare", C1, C1, "/s") == (0, "\nResult Compared: Identical\n", "")
    assert run_reg("compare", C1, C2, "/oa") == (
        0, f"= {LC1}\n    Same    REG_SZ    s\n\nResult Compared: Identical\n", "")
    # Names compare without regard to case.
    ok(run_reg, "add", C1, "/v", "Case", "/d", "c", "/f")
    ok(run_reg, "add", C2, "/v", "CASE", "/d", "c", "/f")
    assert run_reg("compare", C1, C2)[0] == 0


def test_compare_different(run_reg, compare_keys):
    ok(run_reg, "add", C1, "/v", "X", "/d", "1", "/f")
    ok(run_reg, "add", C2, "/v", "X", "/d", "2", "/f")
    ok(run_reg, "add", C1, "/v", "Only1", "/d", "o", "/f")
    ok(run_reg, "add", C2, "/v", "Only2", "/t", "REG_DWORD", "/d", "2", "/f")
    ok(run_reg, "add", C1, "/v", "T", "/d", "1", "/f")
    ok(run_reg, "add", C2, "/v", "T", "/t", "REG_EXPAND_SZ", "/d", "1", "/f")
    diff = (f"< {LC1}\n    X    REG_SZ    1\n> {LC2}\n    X    REG_SZ    2\n"
            f"< {LC1}\n    Only1    REG_SZ    o\n"
            f"< {LC1}\n    T    REG_SZ    1\n> {LC2}\n    T    REG_EXPAND_SZ    1\n"
            f"> {LC2}\n    Only2    REG_DWORD    0x2\n")
    same = f"= {LC1}\n    Same    REG_SZ    s\n"
    end = "\nResult Compared: Different\n"
    assert run_reg("compare", C1, C2) == (2, diff + end, "")
    assert run_reg("compare", C1, C2, "/od") == (2, diff + end, "")
    assert run_reg("compare", C1, C2, "/oa") == (2, same + diff + end, "")
    assert run_reg("compare", C1, C2, "/os") == (2, same + end, "")
    assert run_reg("compare", C1, C2, "/on") == (2, end, "")
    assert run_reg("compare", C1, C2, "/v", "Same") == (0, "\nResult Compared: Identical\n", "")
    assert run_reg("compare", C1, C2, "/v", "X") == (
        2, f"< {LC1}\n    X    REG_SZ    1\n> {LC2}\n    X    REG_SZ    2\n" + end, "")
    assert run_reg("compare", C1, C2, "/v", "Only2") == (
        2, f"> {LC2}\n    Only2    REG_DWORD    0x2\n" + end, "")
    assert run_reg("compare", C1, C2, "/v", "Nowhere") == (0, "\nResult Compared: Identical\n", "")


def test_compare_default_value(run_reg, compare_keys):
    ok(run_reg, "add", C1, "/ve", "/d", "d", "/f")
    assert run_reg("compare", C1, C2, "/ve") == (
        2, f"< {LC1}\n    (Default)    REG_SZ    d\n\nResult Compared: Different\n", "")
    assert run_reg("compare", C1, C2, "/v", "Same")[0] == 0


def test_compare_subkeys(run_reg, compare_keys):
    ok(run_reg, "add", C1 + r"\Only1\Deep", "/f")
    ok(run_reg, "add", C2 + r"\Only2", "/f")
    ok(run_reg, "add", C2 + r"\Sub", "/v", "X", "/d", "changed", "/f")
    # Without /s subkeys do not count.
    assert run_reg("compare", C1, C2)[0] == 0
    assert run_reg("compare", C1, C2, "/s") == (2, (
        f"< {LC1}\\Only1\n"
        f"< {LC1}\\Sub\n    X    REG_SZ    x\n> {LC2}\\Sub\n    X    REG_SZ    changed\n"
        f"> {LC2}\\Only2\n"
        "\nResult Compared: Different\n"), "")


def test_compare_missing_key(run_reg, compare_keys):
    assert run_reg("compare", C1, K + r"\Nope") == (1, "", NOT_FOUND)
    assert run_reg("compare", K + r"\Nope", C1) == (1, "", NOT_FOUND)


# --- SAVE, RESTORE, LOAD, UNLOAD -------------------------------------------------------------


def test_save_and_restore(run_reg, workdir, copy_tree):
    assert run_reg("save", SRC, "src.hiv") == (0, OK, "")
    assert (workdir / "src.hiv").read_bytes()[:4] == b"regf"
    # An existing file: asked, and kept on No.
    old = (workdir / "src.hiv").read_bytes()
    ok(run_reg, "add", SRC, "/v", "Later", "/d", "l", "/f")
    prompt = "File src.hiv already exists. Overwrite (Yes/No)? \n"
    assert run_reg("save", SRC, "src.hiv", input="n\n") == (0, prompt + CANCEL, "")
    assert (workdir / "src.hiv").read_bytes() == old
    ok(run_reg, "delete", SRC, "/v", "Later", "/f")
    assert run_reg("save", SRC, "src.hiv", "/y") == (0, OK, "")
    assert [p.name for p in workdir.iterdir()] == ["src.hiv"]

    ok(run_reg, "add", DST, "/v", "Gone", "/d", "replaced", "/f")
    ok(run_reg, "add", DST + r"\GoneKey", "/f")
    assert run_reg("restore", DST, "src.hiv") == (0, OK, "")
    assert tree(run_reg, DST, LDST) == tree(run_reg, SRC, LSRC)
    assert run_reg("compare", SRC, DST, "/s")[0] == 0


def test_restore_errors(run_reg, workdir, copy_tree):
    rc, out, err = run_reg("restore", SRC, "missing.hiv")
    assert (rc, out) == (1, "") and err == "ERROR: The system cannot find the file specified.\n"
    ok(run_reg, "save", SRC, "src.hiv")
    assert run_reg("restore", K + r"\Nope", "src.hiv") == (1, "", NOT_FOUND)


def test_save_missing_key(run_reg, workdir):
    assert run_reg("save", K, "x.hiv") == (1, "", NOT_FOUND)
    assert list(workdir.iterdir()) == []


def test_load_and_unload(run_reg, workdir, copy_tree):
    ok(run_reg, "save", SRC, "hive.hiv")
    assert run_reg("load", r"HKU\IMSLoaded", "hive.hiv") == (0, OK, "")
    assert tree(run_reg, r"HKU\IMSLoaded", r"HKEY_USERS\IMSLoaded") == tree(run_reg, SRC, LSRC)
    rc, out, err = run_reg("load", r"HKU\IMSLoaded", "hive.hiv")
    assert (rc, out) == (1, "") and err.startswith("ERROR: ")
    ok(run_reg, "add", r"HKU\IMSLoaded", "/v", "Added", "/d", "while loaded", "/f")
    assert run_reg("unload", r"HKU\IMSLoaded") == (0, OK, "")
    assert run_reg("query", r"HKU\IMSLoaded") == (1, "", NOT_FOUND)
    # The change went back into the file.
    ok(run_reg, "load", r"HKEY_USERS\Again", "hive.hiv")
    assert ok(run_reg, "query", r"HKU\Again", "/v", "Added") == (
        "\nHKEY_USERS\\Again\n    Added    REG_SZ    while loaded\n\n")
    ok(run_reg, "unload", r"HKU\Again")


@pytest.mark.parametrize("key", [r"HKCU\Software\X", r"HKU\A\B", "HKU", r"HKCR\X", r"HKCC\X"])
def test_load_needs_a_hive_name(run_reg, workdir, key):
    (workdir / "h.hiv").write_bytes(b"regf")
    assert run_reg("load", key, "h.hiv") == (1, "", bad_key("LOAD"))
    assert run_reg("unload", key) == (1, "", bad_key("UNLOAD"))


def test_load_errors(run_reg, workdir):
    rc, out, err = run_reg("load", r"HKU\X", "missing.hiv")
    assert (rc, out, err) == (1, "", "ERROR: The system cannot find the file specified.\n")
    (workdir / "junk.hiv").write_bytes(b"not a hive at all" * 100)
    rc, out, err = run_reg("load", r"HKU\X", "junk.hiv")
    assert (rc, out) == (1, "") and err.startswith("ERROR: ")
    assert run_reg("query", r"HKU\X") == (1, "", NOT_FOUND)
    rc, out, err = run_reg("unload", r"HKU\NotLoaded")
    assert (rc, out) == (1, "") and err.startswith("ERROR: ")
