/* base_test.c - unit tests of lib/base: buffers, text conversion, SHA-256, files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"

static char *hex(const uint8_t *p, size_t n)
{
    static char out[1024];
    for (size_t i = 0; i < n && i < 500; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
    out[2 * (n < 500 ? n : 500)] = 0;
    return out;
}

static void test_buf(void **state)
{
    (void)state;
    buf b = BUF_INIT;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(buf_printf(&b, "%d,", i), 0);
    assert_int_equal(b.len, 3890);
    assert_memory_equal(b.data, "0,1,2,", 6);
    assert_int_equal(buf_add_u16(&b, 0x20ac), 0);
    assert_int_equal(b.data[b.len - 2], 0xac);
    assert_int_equal(b.data[b.len - 1], 0x20);
    size_t n;
    char *s = buf_detach(&b, &n);
    assert_int_equal(n, 3892);
    assert_null(b.data);
    free(s);
    /* A capped reserve stops at the cap when the need fits. */
    assert_int_equal(buf_reserve_capped(&b, 1000, 1001), 0);
    assert_int_equal(b.cap, 1001);
    buf_free(&b);
}

static void test_utf(void **state)
{
    (void)state;
    static const struct {
        const char *utf8;
        const char *utf16hex;
    } cases[] = {
        {"A", "4100"},
        {"caf\xc3\xa9", "630061006600e900"},
        {"\xe2\x82\xac", "ac20"},
        {"\xf0\x9d\x84\x9e", "34d81edd"}, /* U+1D11E: a surrogate pair */
        {"\xed\xa0\x80", "00d8"},         /* a lone surrogate, as WTF-8 */
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf w = BUF_INIT, back = BUF_INIT;
        assert_int_equal(base_utf8_to_utf16(cases[i].utf8, strlen(cases[i].utf8), &w), 0);
        assert_string_equal(hex(w.data, w.len), cases[i].utf16hex);
        assert_int_equal(base_utf16_to_utf8(w.data, w.len / 2, &back), 0);
        assert_int_equal(back.len, strlen(cases[i].utf8));
        assert_memory_equal(back.data ? (char *)back.data : "", cases[i].utf8, back.len);
        buf_free(&w);
        buf_free(&back);
    }
    static const char *bad[] = {"\xc3", "\xc0\x80", "\xf8\x88\x80\x80\x80", "\xf4\x90\x80\x80",
                                "a\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        buf w = BUF_INIT;
        assert_int_equal(base_utf8_to_utf16(bad[i], strlen(bad[i]), &w), EILSEQ);
        assert_int_equal(w.len, 0);
        assert_false(base_utf8_valid(bad[i], strlen(bad[i])));
        buf_free(&w);
    }
}

static void test_cp1252(void **state)
{
    (void)state;
    const uint8_t in[] = {'c', 0xe9, 0x80, 0x81, 0x9f};
    buf w = BUF_INIT, back = BUF_INIT;
    assert_int_equal(base_cp1252_to_utf16(in, sizeof in, &w), 0);
    assert_string_equal(hex(w.data, w.len), "6300e900ac2081007801");
    assert_int_equal(base_utf16_to_cp1252(w.data, w.len / 2, &back), 0);
    assert_memory_equal(back.data, in, sizeof in);
    back.len = 0;
    const uint8_t cjk[] = {0x2d, 0x4e};
    assert_int_equal(base_utf16_to_cp1252(cjk, 1, &back), 0);
    assert_int_equal(back.data[0], '?');
    buf_free(&w);
    buf_free(&back);
}

/* CRC-32C: the check value of the catalogue, RFC 3720's test patterns, and pieces chained. */
static void test_crc32c(void **state)
{
    (void)state;
    assert_int_equal(base_crc32c(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(base_crc32c(0, "", 0), 0);
    uint8_t zeros[32] = {0}, ones[32], inc[32];
    memset(ones, 0xff, sizeof ones);
    for (int i = 0; i < 32; i++)
        inc[i] = (uint8_t)i;
    assert_int_equal(base_crc32c(0, zeros, 32), 0x8a9136aau);
    assert_int_equal(base_crc32c(0, ones, 32), 0x62a8ab43u);
    assert_int_equal(base_crc32c(0, inc, 32), 0x46dd794eu);
    /* Any split gives the whole's value (the 8-byte steps and the byte tail alike). */
    uint8_t big[1000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7 + 3);
    uint32_t whole = base_crc32c(0, big, sizeof big);
    for (size_t cut = 0; cut <= sizeof big; cut += 37)
        assert_int_equal(base_crc32c(base_crc32c(0, big, cut), big + cut, sizeof big - cut), whole);
    /* The table gives what the instruction gives. */
    assert_int_equal(base_crc32c_table(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(base_crc32c_table(0, big, sizeof big), whole);
    assert_int_equal(base_crc32c_table(base_crc32c_table(0, big, 5), big + 5, sizeof big - 5),
                     whole);
}

static void test_sha256(void **state)
{
    (void)state;
    /* FIPS 180-4 examples, and lengths around the padding boundary. */
    static const struct {
        const char *in;
        size_t repeat;
        const char *digest;
    } cases[] = {
        {"", 1, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"a", 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {"a", 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {"a", 64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf in = BUF_INIT;
        for (size_t r = 0; r < cases[i].repeat; r++)
            buf_adds(&in, cases[i].in);
        uint8_t d[32];
        base_sha256(in.data ? in.data : (uint8_t *)"", in.len, d);
        assert_string_equal(hex(d, 32), cases[i].digest);
        buf_free(&in);
    }
}

static void test_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/base_test.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/a/b/c", dir);
    assert_int_equal(base_mkdir_p(path, 0755), 0);
    snprintf(path, sizeof path, "%s/a/file", dir);
    assert_int_equal(base_write_file_atomic(path, "hello", 5, 0600), 0);
    assert_int_equal(base_write_file_atomic(path, "bye", 3, 0600), 0);
    buf b = BUF_INIT;
    assert_int_equal(base_read_file(path, 100, &b), 0);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "bye", 3);
    b.len = 0;
    assert_int_equal(base_read_file(path, 2, &b), EFBIG);
    assert_int_equal(b.len, 0);
    assert_int_equal(base_read_file("/nonexistent/x", 2, &b), ENOENT);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* A failed write leaves nothing behind and the old file as it was. */
    snprintf(path, sizeof path, "%s/missing/file", dir);
    assert_int_equal(base_write_file_atomic(path, "x", 1, 0600), ENOENT);
    buf_free(&b);
    uint8_t boot[16];
    assert_int_equal(base_boot_id(boot), 0);
    uint64_t t = base_filetime_now();
    assert_true(t > 133000000000000000ULL); /* after 2022 */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* RFC 4648 section 10's vectors both ways; the strict decoder's refusals. */
static void test_b64(void **state)
{
    (void)state;
    static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    char out[16];
    uint8_t dec[16];
    size_t n;
    for (size_t i = 0; i < 7; i++) {
        assert_int_equal(base_b64_encode(plain[i], strlen(plain[i]), out, sizeof out),
                         strlen(coded[i]));
        assert_string_equal(out, coded[i]);
        assert_int_equal(base_b64_decode(coded[i], strlen(coded[i]), dec, sizeof dec, &n), 0);
        assert_int_equal(n, strlen(plain[i]));
        assert_memory_equal(dec, plain[i], n);
    }
    /* Too small an output: refused, not cut. */
    assert_int_equal(base_b64_encode("foobar", 6, out, 8), (size_t)-1);
    assert_string_equal(out, "");
    assert_int_equal(base_b64_decode("Zm9vYmFy", 8, dec, 5, &n), E2BIG);
    /* Every byte value survives, including NUL. */
    uint8_t all[256], back[256];
    char big[BASE_B64_LEN(256) + 1];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    assert_int_equal(base_b64_encode(all, 256, big, sizeof big), BASE_B64_LEN(256));
    assert_int_equal(base_b64_decode(big, strlen(big), back, sizeof back, &n), 0);
    assert_int_equal(n, 256);
    assert_memory_equal(all, back, 256);
    static const char *bad[] = {"Zg=",  "Zg",   "Z===", "=Zg=", "Zg=a",     "Zm9v\r\n",
                                "Zm 9", "Zh==", "Zm9=", "Zm-v", "Zm9v====", "Zg==Zg=="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(base_b64_decode(bad[i], strlen(bad[i]), dec, sizeof dec, &n), EILSEQ);
}

/* base_pread_all reads what is there from an offset: all of it, up to the end of the file,
 * or an errno for a bad descriptor. base_opendirat lists a directory by its descriptor and
 * refuses a file. */
static void test_pread_and_opendirat(void **state)
{
    (void)state;
    char dir[] = "/tmp/base_test.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/f", dir);
    assert_int_equal(base_write_file_atomic(path, "0123456789", 10, 0600), 0);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    char b[16];
    size_t got = 99;
    assert_int_equal(base_pread_all(fd, b, 4, 3, &got), 0);
    assert_int_equal(got, 4);
    assert_memory_equal(b, "3456", 4);
    assert_int_equal(base_pread_all(fd, b, 16, 6, &got), 0);
    assert_int_equal(got, 4); /* the end of the file */
    assert_int_equal(base_pread_all(fd, b, 4, 50, &got), 0);
    assert_int_equal(got, 0);
    assert_int_equal(base_pread_all(-1, b, 4, 0, &got), EBADF);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    assert_true(dfd >= 0);
    DIR *d = base_opendirat(dfd, ".");
    assert_non_null(d);
    int seen = 0;
    for (struct dirent *e; (e = readdir(d));)
        seen += !strcmp(e->d_name, "f");
    assert_int_equal(seen, 1);
    closedir(d);
    errno = 0;
    assert_null(base_opendirat(dfd, "f"));
    assert_int_equal(errno, ENOTDIR);
    close(dfd);
    close(fd);
    unlink(path);
    rmdir(dir);
}

/* base_rename_noreplace moves a file into another directory, but never over one there: then
 * EEXIST, and both files stay as they were. A missing source is ENOENT. */
static void test_rename_noreplace(void **state)
{
    (void)state;
    char dir[] = "/tmp/base_test.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char a[64], b[64], path[96];
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    assert_int_equal(mkdir(a, 0700), 0);
    assert_int_equal(mkdir(b, 0700), 0);
    int afd = open(a, O_RDONLY | O_DIRECTORY), bfd = open(b, O_RDONLY | O_DIRECTORY);
    assert_true(afd >= 0 && bfd >= 0);
    snprintf(path, sizeof path, "%s/x", a);
    assert_int_equal(base_write_file_atomic(path, "new", 3, 0600), 0);
    snprintf(path, sizeof path, "%s/y", b);
    assert_int_equal(base_write_file_atomic(path, "old", 3, 0600), 0);
    assert_int_equal(base_rename_noreplace(afd, "x", bfd, "y"), EEXIST);
    char got[8] = {0};
    int fd = openat(bfd, "y", O_RDONLY);
    assert_int_equal(read(fd, got, sizeof got), 3);
    assert_string_equal(got, "old");
    close(fd);
    assert_int_equal(faccessat(afd, "x", F_OK, 0), 0);
    assert_int_equal(base_rename_noreplace(afd, "x", bfd, "z"), 0);
    assert_int_equal(faccessat(afd, "x", F_OK, 0), -1);
    memset(got, 0, sizeof got);
    fd = openat(bfd, "z", O_RDONLY);
    assert_int_equal(read(fd, got, sizeof got), 3);
    assert_string_equal(got, "new");
    close(fd);
    assert_int_equal(base_rename_noreplace(afd, "x", bfd, "w"), ENOENT);
    unlinkat(bfd, "y", 0);
    unlinkat(bfd, "z", 0);
    close(afd);
    close(bfd);
    rmdir(a);
    rmdir(b);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_utf),
        cmocka_unit_test(test_cp1252),
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_b64),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_pread_and_opendirat),
        cmocka_unit_test(test_rename_noreplace),
    };
    return cmocka_run_group_tests_name("base", tests, NULL, NULL);
}
