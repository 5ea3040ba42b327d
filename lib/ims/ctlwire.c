/* ctlwire.c - the control socket's wire format: request lines of TAB-separated words, body
 * lines dot-stuffed as SMTP's DATA, the final .OK or .ERR line. Shared by imsd and imsctl. */
#include "ims/ims.h"

#include <errno.h>
#include <string.h>

int ims_ctl_request(buf *out, int argc, const char *const *argv)
{
    if (argc < 1 || !argv[0] || !argv[0][0])
        return EINVAL;
    if (argc > IMS_CTL_ARGS_MAX)
        return E2BIG;
    size_t total = 1; /* the LF */
    for (int i = 0; i < argc; i++) {
        if (!argv[i] || strpbrk(argv[i], "\t\r\n"))
            return EINVAL;
        total += strlen(argv[i]) + (i > 0);
    }
    if (total > IMS_CTL_REQUEST_MAX)
        return E2BIG;
    if (buf_reserve(out, total))
        return ENOMEM;
    for (int i = 0; i < argc; i++) {
        if (i > 0)
            buf_addc(out, '\t');
        buf_adds(out, argv[i]);
    }
    buf_addc(out, '\n');
    return 0;
}

int ims_ctl_split(char *line, size_t len, char **argv, int max)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    line[len] = 0;
    if (len == 0) {
        argv[0] = NULL;
        return 0;
    }
    int n = 0;
    char *p = line;
    for (;;) {
        if (n == max)
            return -1;
        argv[n++] = p;
        char *tab = memchr(p, '\t', (size_t)(line + len - p));
        if (!tab)
            break;
        *tab = 0;
        p = tab + 1;
    }
    argv[n] = NULL;
    return n;
}

int ims_ctl_stuff(buf *out, const void *data, size_t len, bool *bol)
{
    const char *p = data, *end = p + len;
    while (p < end) {
        if (*bol && *p == '.' && buf_addc(out, '.'))
            return ENOMEM;
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        const char *stop = lf ? lf + 1 : end;
        if (buf_add(out, p, (size_t)(stop - p)))
            return ENOMEM;
        *bol = lf != NULL;
        p = stop;
    }
    return 0;
}

ims_ctl_kind ims_ctl_parse(const char *line, size_t len, const char **text, size_t *n)
{
    if (len == 0 || line[0] != '.') {
        *text = line;
        *n = len;
        return IMS_CTL_BODY;
    }
    if (len >= 2 && line[1] == '.') {
        *text = line + 1;
        *n = len - 1;
        return IMS_CTL_BODY;
    }
    *text = line + len;
    *n = 0;
    if (len == 3 && !memcmp(line, ".OK", 3))
        return IMS_CTL_OK;
    if (len >= 4 && !memcmp(line, ".ERR", 4) && (len == 4 || line[4] == ' ')) {
        *text = line + (len > 4 ? 5 : 4);
        *n = len > 4 ? len - 5 : 0;
        return IMS_CTL_ERR;
    }
    return IMS_CTL_BAD;
}
