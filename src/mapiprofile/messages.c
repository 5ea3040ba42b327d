/* messages.c - how mapiprofile reports failures: the one table of MAPI errors in plain words
 * (by what the error is about), and the error and usage-error printers. */
#include "mapiprofile.h"

#include <stdarg.h>
#include <stdio.h>

/* A row applies to one subject, or to every subject with MP_ANY. The first row that matches
 * both the code and the subject wins; then the first with the code and MP_ANY. */
#define MP_ANY (-1)

static const struct {
    mapi_err e;
    int about;
    const char *text;
} error_texts[] = {
    {MAPI_E_NOT_FOUND, MP_ABOUT_PROFILE, "no such profile"},
    {MAPI_E_NOT_FOUND, MP_ABOUT_TARGET, "no such profile"},
    {MAPI_E_NOT_FOUND, MP_ABOUT_SERVICE, "no such message service in the catalogue"},
    {MAPI_E_NOT_FOUND, MP_ABOUT_DEFAULT, "there is no default profile"},
    {MAPI_E_NO_ACCESS, MP_ABOUT_NEW, "a profile of that name exists"},
    {MAPI_E_NO_ACCESS, MP_ABOUT_DENIED,
     "refused: a pending rename will take the name, or the profile store may not be changed"},
    {MAPI_E_NO_ACCESS, MP_ABOUT_TARGET,
     "a profile of that name exists, or a pending rename will take the name"},
    {MAPI_E_NO_ACCESS, MP_ABOUT_SERVICE,
     "the profile has that service already, and one is all it may have"},
    {MAPI_E_NO_ACCESS, MP_ANY, "access denied"},
    {MAPI_E_LOGON_FAILED, MP_ANY, "no such profile, or it is being deleted"},
    {MAPI_E_INVALID_PARAMETER, MP_ABOUT_NEW,
     "not a valid profile name (1 to 64 characters, no backslash or control character, no "
     "leading or trailing space)"},
    {MAPI_E_INVALID_PARAMETER, MP_ABOUT_TARGET,
     "not a valid profile name (1 to 64 characters, no backslash or control character, no "
     "leading or trailing space)"},
    {MAPI_E_INVALID_PARAMETER, MP_ABOUT_SERVICE, "the service does not accept these settings"},
    {MAPI_E_INVALID_PARAMETER, MP_ANY, "an argument is not valid"},
    {MAPI_E_NOT_ENOUGH_MEMORY, MP_ANY, "out of memory"},
    {MAPI_E_NOT_ENOUGH_DISK, MP_ANY, "the disk is full"},
    {MAPI_E_NOT_ENOUGH_RESOURCES, MP_ANY, "a limit was reached"},
    {MAPI_E_NO_SUPPORT, MP_ANY, "not supported"},
    {MAPI_E_CORRUPT_STORE, MP_ANY, "the profile is damaged"},
    {MAPI_E_CORRUPT_DATA, MP_ANY, "a stored value is damaged"},
    {MAPI_E_BAD_CHARWIDTH, MP_ANY, "the text cannot be written in code page 1252"},
    {MAPI_E_STRING_TOO_LONG, MP_ANY, "a text is too long"},
    {MAPI_E_BAD_VALUE, MP_ANY, "a value is not valid"},
    {MAPI_E_INVALID_TYPE, MP_ANY, "a property of that type cannot be stored"},
    {MAPI_E_TYPE_NO_SUPPORT, MP_ANY, "a property of that type cannot be stored"},
    {MAPI_E_UNKNOWN_FLAGS, MP_ANY, "unknown flags"},
    {MAPI_E_BUSY, MP_ANY, "the profile store is busy"},
    {MAPI_E_TIMEOUT, MP_ANY, "timed out"},
    {MAPI_E_COLLISION, MP_ANY, "a name is taken"},
    {MAPI_E_END_OF_SESSION, MP_ANY, "the session has ended"},
    {MAPI_E_USER_CANCEL, MP_ANY, "cancelled"},
    {MAPI_E_NOT_INITIALIZED, MP_ANY, "the service has no configuration entry point"},
    {MAPI_E_NETWORK_ERROR, MP_ANY, "a network error"},
    {MAPI_E_CALL_FAILED, MP_ANY, "the operation failed"},
};

const char *mp_error_text(mapi_err e, mp_subject about)
{
    const char *any = NULL;
    for (size_t i = 0; i < sizeof error_texts / sizeof error_texts[0]; i++) {
        if (error_texts[i].e != e)
            continue;
        if (error_texts[i].about == (int)about)
            return error_texts[i].text;
        if (error_texts[i].about == MP_ANY && !any)
            any = error_texts[i].text;
    }
    return any ? any : "the operation failed";
}

/* say - "mapiprofile: " and the formatted text on stderr, without the line end; stdout is
 * flushed first so that both streams stay in order on a terminal. */
static void say(const char *fmt, va_list ap)
{
    fflush(stdout);
    fputs("mapiprofile: ", stderr);
    vfprintf(stderr, fmt, ap);
}

int mp_fail(mapi_err e, mp_subject about, const char *what, ...)
{
    va_list ap;
    va_start(ap, what);
    say(what, ap);
    va_end(ap);
    fprintf(stderr, ": %s (%s)\n", mp_error_text(e, about), mapi_strerror(e));
    return MP_EXIT_FAIL;
}

int mp_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return MP_EXIT_FAIL;
}

int mp_usage_error(const mp_command *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
    if (cmd)
        fprintf(stderr, "\nUsage: mapiprofile %s\nTry \"mapiprofile %s --help\".\n", cmd->synopsis,
                cmd->name);
    else
        fputs("\nTry \"mapiprofile --help\".\n", stderr);
    return MP_EXIT_USAGE;
}
