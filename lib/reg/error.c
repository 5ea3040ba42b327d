/* error.c - Win32 error numbers: their Windows message texts and the errno boundary. */
#include "reg/store.h"

#include <errno.h>

static const struct {
    int code;
    const char *text;
} messages[] = {
    {ERROR_SUCCESS, "The operation completed successfully."},
    {ERROR_FILE_NOT_FOUND, "The system cannot find the file specified."},
    {ERROR_PATH_NOT_FOUND, "The system cannot find the path specified."},
    {ERROR_ACCESS_DENIED, "Access is denied."},
    {ERROR_INVALID_HANDLE, "The handle is invalid."},
    {ERROR_NOT_ENOUGH_MEMORY, "Not enough memory resources are available to process this command."},
    {ERROR_INVALID_DATA, "The data is invalid."},
    {ERROR_NOT_SAME_DEVICE, "The system cannot move the file to a different disk drive."},
    {ERROR_WRITE_FAULT, "The system cannot write to the specified device."},
    {ERROR_READ_FAULT, "The system cannot read from the specified device."},
    {ERROR_DISK_FULL, "There is not enough space on the disk."},
    {ERROR_INVALID_PARAMETER, "The parameter is incorrect."},
    {ERROR_INSUFFICIENT_BUFFER, "The data area passed to a system call is too small."},
    {ERROR_BAD_PATHNAME, "The specified path is invalid."},
    {ERROR_ALREADY_EXISTS, "Cannot create a file when that file already exists."},
    {ERROR_FILENAME_EXCED_RANGE, "The filename or extension is too long."},
    {ERROR_MORE_DATA, "More data is available."},
    {ERROR_NO_MORE_ITEMS, "No more data is available."},
    {ERROR_NOACCESS, "Invalid access to memory location."},
    {ERROR_BADDB, "The configuration registry database is corrupt."},
    {ERROR_BADKEY, "The configuration registry key is invalid."},
    {ERROR_CANTOPEN, "The configuration registry key could not be opened."},
    {ERROR_CANTREAD, "The configuration registry key could not be read."},
    {ERROR_CANTWRITE, "The configuration registry key could not be written."},
    {ERROR_REGISTRY_CORRUPT,
     "The structure of one of the files containing registry data is corrupt, "
     "or the system's memory image of the file is corrupt, or the file "
     "could not be recovered because the alternate copy or log was absent "
     "or corrupt."},
    {ERROR_REGISTRY_IO_FAILED, "An I/O operation initiated by the registry failed unrecoverably."},
    {ERROR_NOT_REGISTRY_FILE, "The system has attempted to load or restore a file into the "
                              "registry, but the specified file is not in a registry file format."},
    {ERROR_KEY_DELETED, "Illegal operation attempted on a registry key that has been marked for "
                        "deletion."},
    {ERROR_KEY_HAS_CHILDREN, "Cannot create a symbolic link in a registry key that already has "
                             "subkeys or values."},
    {ERROR_CHILD_MUST_BE_VOLATILE, "Cannot create a stable subkey under a volatile parent key."},
    {ERROR_PRIVILEGE_NOT_HELD, "A required privilege is not held by the client."},
};

const char *reg_strerror(int err)
{
    for (size_t i = 0; i < sizeof messages / sizeof messages[0]; i++)
        if (messages[i].code == err)
            return messages[i].text;
    return "An unexpected error occurred.";
}

int reg_errno_to_win32(int e)
{
    switch (e) {
    case 0:
        return ERROR_SUCCESS;
    case ENOENT:
        return ERROR_FILE_NOT_FOUND;
    case ENOTDIR:
        return ERROR_PATH_NOT_FOUND;
    case EACCES:
    case EPERM:
    case EROFS:
        return ERROR_ACCESS_DENIED;
    case ENOMEM:
        return ERROR_NOT_ENOUGH_MEMORY;
    case ENOSPC:
    case EDQUOT:
        return ERROR_DISK_FULL;
    case EEXIST:
        return ERROR_ALREADY_EXISTS;
    case ENAMETOOLONG:
        return ERROR_FILENAME_EXCED_RANGE;
    case EINVAL:
    case EILSEQ:
        return ERROR_INVALID_PARAMETER;
    case EFBIG:
        return ERROR_INVALID_DATA;
    case EIO:
        return ERROR_REGISTRY_IO_FAILED;
    default:
        return ERROR_REGISTRY_IO_FAILED;
    }
}

/* reg_mdb_err - LMDB results (errno values or MDB_*) as Win32 errors. */
int reg_mdb_err(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return ERROR_SUCCESS;
    case MDB_NOTFOUND:
        return ERROR_FILE_NOT_FOUND;
    case MDB_MAP_FULL:
        return ERROR_DISK_FULL;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
        return ERROR_BADDB;
    case MDB_PANIC:
        return ERROR_REGISTRY_IO_FAILED;
    default:
        return rc > 0 ? reg_errno_to_win32(rc) : ERROR_REGISTRY_IO_FAILED;
    }
}
