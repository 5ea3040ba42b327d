"""Registry views (/reg:32, /reg:64): our reg and Wine's reg.exe run the same command lines
and must give the same exit codes, `reg query` output and exported files; where Wine 8 and
Windows' documented rules differ we follow Windows, and the difference is asserted as such
(docs/registry.md)."""

import os
import re

import pytest

import wine_oracle
from wine_oracle import canonical_query, canonical_reg

LM = "HKLM\\Software\\ImsViews"  # 64-bit view; its 32-bit twin is under Wow6432Node
LM32 = "HKLM\\Software\\Wow6432Node\\ImsViews"


@pytest.fixture(scope="module")
def wine():
    """One Wine prefix for the module ($IMS_WINE_PREFIX when set), its wineserver stopped at
    the end."""
    if not wine_oracle.wine_available():
        msg = "wine is not installed (apt-get install wine wine64): views cannot be compared"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    prefix = wine_oracle.WinePrefix(os.environ.get("IMS_WINE_PREFIX") or None)
    try:
        prefix.start()
        if prefix.reused:  # leftovers of an earlier run, in both views
            for key in (LM, LM32, "HKLM\\Software\\Classes\\Wow6432Node\\CLSID\\ImsViews",
                        "HKCU\\Software\\ImsViews", "HKLM\\System\\ImsViews"):
                prefix.reg("delete", key, "/f", check=False)
        yield prefix
    finally:
        prefix.stop()


@pytest.fixture
def base(request):
    """A subkey name of its own for each test: Wine's prefix is shared by the module."""
    return request.node.name.replace("[", "_").replace("]", "").replace("-", "_")


@pytest.fixture
def both(run_reg, wine):
    """both(*args) runs `reg ARGS` with ours and Wine's and checks they agree: the same exit
    code and, for a query that succeeded (unless same_output=False), the same output.
    Returns (rc, our stdout)."""

    def run(*args, same_output=True):
        rc, out, err = run_reg(*args)
        theirs = wine.reg(*args, check=False)
        what = f"reg {' '.join(args)}"
        assert rc == theirs.returncode, (
            f"{what}: ours rc={rc} ({out!r} {err!r}), Wine rc={theirs.returncode} "
            f"({theirs.stdout!r} {theirs.stderr!r})")
        if rc == 0 and args[0].lower() == "query" and same_output:
            want = windows_search_end(canonical_query(theirs.stdout, wine=True))
            assert canonical_query(out, wine=False) == want, what
        return rc, out

    return run


def windows_search_end(lines):
    """Wine's line after a /v or /f search in the words of Windows' reg.exe (and ours)."""
    pattern = re.compile(r"Search complete\. Number of matches found: (\d+)$")
    return [pattern.sub(r"End of search: \1 match(es) found.", line) for line in lines]


def query_names(out):
    """The key lines of `reg query` output."""
    return [line for line in out.replace("\r", "").split("\n") if line.startswith("HKEY_")]


def test_hklm_software_is_redirected(both, base):
    k = f"{LM}\\{base}"
    assert both("add", k, "/v", "bits", "/d", "32", "/reg:32", "/f")[0] == 0
    for args in (["/reg:64"], [], ["/REG:32"], ["-reg:32"]):
        both("query", k, *args)
    # The 32-bit key is found where it is stored, from either view: no second redirection.
    for args in ([], ["/reg:64"], ["/reg:32"]):
        assert both("query", f"{LM32}\\{base}", *args)[0] == 0
    assert both("add", k, "/v", "bits", "/d", "64", "/reg:64", "/f")[0] == 0
    for args in ([], ["/reg:32"], ["/reg:64"]):
        rc, out = both("query", k, *args)
        assert rc == 0 and ("32" if args == ["/reg:32"] else "64") in out
    assert both("add", f"{LM32}\\{base}\\Sub", "/reg:32", "/f")[0] == 0
    assert both("query", f"{LM}\\{base}\\Sub", "/reg:32")[0] == 0
    assert both("query", f"{LM32}\\Wow6432Node\\{base}", "/reg:64")[0] == 1


def test_software_listing_in_each_view(both, base):
    both("add", f"HKLM\\Software\\{base}32", "/reg:32", "/f")
    both("add", f"HKLM\\Software\\{base}64", "/f")
    # Not compared line by line: Wine's prefix has its own keys there.
    rc, out32 = both("query", "HKLM\\Software", "/reg:32", same_output=False)
    names32 = query_names(out32)
    assert f"HKEY_LOCAL_MACHINE\\Software\\{base}32" in names32
    assert f"HKEY_LOCAL_MACHINE\\Software\\{base}64" not in names32
    assert "HKEY_LOCAL_MACHINE\\Software\\Wow6432Node" not in names32
    rc, out64 = both("query", "HKLM\\Software", "/reg:64", same_output=False)
    names64 = query_names(out64)
    assert f"HKEY_LOCAL_MACHINE\\Software\\{base}64" in names64
    assert f"HKEY_LOCAL_MACHINE\\Software\\{base}32" not in names64
    assert "HKEY_LOCAL_MACHINE\\Software\\Wow6432Node" in names64


@pytest.mark.parametrize("key", ["HKCU\\Software\\ImsViews", "HKLM\\System\\ImsViews",
                                 "HKCU\\Software\\Classes\\ImsViews"])
def test_shared_keys_are_one_key(both, base, key):
    k = f"{key}\\{base}"
    assert both("add", k, "/v", "x", "/d", "32", "/reg:32", "/f")[0] == 0
    for args in ([], ["/reg:64"], ["/reg:32"]):
        both("query", k, *args)
    assert both("add", k, "/v", "x", "/d", "64", "/reg:64", "/f")[0] == 0
    rc, out = both("query", k, "/reg:32")
    assert rc == 0 and "64" in out


def test_hkcr_clsid_is_redirected(both, base):
    k = f"HKCR\\CLSID\\ImsViews{base}"
    assert both("add", k, "/v", "x", "/d", "y", "/reg:32", "/f")[0] == 0
    both("query", k, "/reg:32")
    assert both("query", k, "/reg:64")[0] == 1
    assert both("query", f"HKLM\\Software\\Classes\\Wow6432Node\\CLSID\\ImsViews{base}")[0] == 0
    assert both("query", f"HKCR\\Wow6432Node\\CLSID\\ImsViews{base}", "/reg:64")[0] == 0
    assert both("delete", k, "/reg:32", "/f")[0] == 0
    assert both("query", f"HKLM\\Software\\Classes\\Wow6432Node\\CLSID\\ImsViews{base}")[0] == 1


def test_delete_in_a_view(both, base):
    k = f"{LM}\\{base}"
    both("add", f"{k}\\Sub", "/v", "x", "/d", "32", "/reg:32", "/f")
    both("add", f"{k}\\Sub", "/v", "x", "/d", "64", "/f")
    assert both("delete", f"{k}\\Sub", "/v", "x", "/reg:32", "/f")[0] == 0
    both("query", f"{k}\\Sub", "/reg:32")
    both("query", f"{k}\\Sub")
    assert both("delete", k, "/reg:32", "/f")[0] == 0
    assert both("query", k, "/reg:32")[0] == 1
    assert both("query", k, "/s")[0] == 0
    assert both("delete", k, "/reg:32", "/f")[0] == 1
    assert both("delete", k, "/reg:64", "/f")[0] == 0
    assert both("query", k)[0] == 1


def test_copy_opens_both_keys_in_the_view(both, base):
    src, dst = f"{LM}\\{base}\\Src", f"{LM}\\{base}\\Dst"
    both("add", f"{src}\\Deep", "/v", "x", "/d", "32", "/reg:32", "/f")
    both("add", f"{src}\\Deep", "/v", "x", "/d", "64", "/f")
    assert both("copy", src, dst, "/s", "/f", "/reg:32")[0] == 0
    both("query", dst, "/s", "/reg:32")
    assert both("query", dst, "/reg:64")[0] == 1
    assert both("query", f"{LM32}\\{base}\\Dst\\Deep")[0] == 0
    assert both("copy", src, dst, "/s", "/f")[0] == 0
    rc, out = both("query", f"{dst}\\Deep")
    assert rc == 0 and "64" in out


def test_query_recursive_in_a_view(both, base):
    k = f"{LM}\\{base}"
    for i, view in enumerate(["/reg:32", "/reg:64"]):
        both("add", f"{k}\\A\\B", "/v", "v", "/d", f"view{i}", view, "/f")
        both("add", f"{k}\\C", "/v", "w", "/t", "REG_DWORD", "/d", str(i), view, "/f")
    both("add", f"{k}\\Only32", "/reg:32", "/f")
    for view in (["/reg:32"], ["/reg:64"], []):
        both("query", k, "/s", *view)
        both("query", k, "/v", "v", "/s", *view)


def test_export_names_keys_as_the_view_does(both, run_reg, wine, base, workdir, tmp_path):
    k = f"{LM}\\{base}"
    both("add", f"{k}\\Sub", "/v", "bits", "/d", "32", "/reg:32", "/f")
    both("add", f"{k}\\Sub", "/v", "bits", "/d", "64", "/f")
    for view in ("/reg:32", "/reg:64"):
        mine, theirs = workdir / "ours.reg", tmp_path / "wine.reg"
        assert run_reg("export", k, str(mine), "/y", view)[0] == 0
        wine.reg("export", k, theirs, "/y", view)
        assert canonical_reg(mine.read_bytes()) == canonical_reg(theirs.read_bytes()), view
        text = wine_oracle.decode_reg(mine.read_bytes())
        assert f"[HKEY_LOCAL_MACHINE\\Software\\ImsViews\\{base}\\Sub]" in text
        assert ('"bits"="32"' in text) == (view == "/reg:32")


def test_import_in_a_view(both, run_reg, wine, base, workdir):
    text = (
        "Windows Registry Editor Version 5.00\r\n\r\n"
        f"[HKEY_LOCAL_MACHINE\\Software\\ImsViews\\{base}]\r\n\"a\"=\"lm\"\r\n\r\n"
        f"[HKEY_CLASSES_ROOT\\CLSID\\ImsViews{base}]\r\n\"a\"=\"cr\"\r\n\r\n"
        f"[HKEY_CURRENT_USER\\Software\\ImsViews\\{base}]\r\n\"a\"=\"cu\"\r\n"
    )
    path = workdir / "v.reg"
    path.write_bytes(wine_oracle.BOM_UTF16LE + text.encode("utf-16-le"))
    assert run_reg("import", str(path), "/reg:32")[0] == 0
    wine.reg("import", path, "/reg:32")
    for key, args in ((f"{LM32}\\{base}", []), (f"{LM}\\{base}", ["/reg:32"]),
                      (f"{LM}\\{base}", []),
                      (f"HKLM\\Software\\Classes\\Wow6432Node\\CLSID\\ImsViews{base}", []),
                      (f"HKCU\\Software\\ImsViews\\{base}", [])):
        both("query", key, *args)


@pytest.mark.parametrize("views", [("/reg:32", "/reg:64"), ("/reg:64", "/reg:32"),
                                   ("/reg:32", "/reg:32"), ("-reg:64", "/REG:64")])
def test_one_view_switch_at_most(both, run_reg, views):
    assert both("query", "HKLM\\Software", *views)[0] == 1
    assert both("add", f"{LM}\\Never", "/f", *views)[0] == 1
    assert run_reg("query", f"{LM}\\Never", "/reg:32")[0] == 1
    assert run_reg("query", f"{LM}\\Never")[0] == 1


# Where Wine 8.0 and Windows (7 and later) differ; we follow Windows' documentation. Each row:
# the key made with /reg:32, where Windows keeps it, where Wine 8.0 puts it.
DIVERGENCES = [
    # Classes is shared on Windows but for CLSID, Interface and three more; Wine redirects it.
    ("HKCR\\.imsviews", "HKLM\\Software\\Classes\\.imsviews",
     "HKLM\\Software\\Classes\\Wow6432Node\\.imsviews"),
    ("HKLM\\Software\\Classes\\ImsViewsLm", "HKLM\\Software\\Classes\\ImsViewsLm",
     "HKLM\\Software\\Classes\\Wow6432Node\\ImsViewsLm"),
    # A user's CLSID is redirected on Windows; Wine shares all of a user's hive.
    ("HKCU\\Software\\Classes\\CLSID\\ImsViews",
     "HKCU\\Software\\Classes\\Wow6432Node\\CLSID\\ImsViews",
     "HKCU\\Software\\Classes\\CLSID\\ImsViews"),
]


@pytest.mark.parametrize("made,windows,wine_place", DIVERGENCES)
def test_known_divergences_from_wine(run_reg, wine, made, windows, wine_place):
    assert run_reg("add", made, "/reg:32", "/f")[0] == 0
    assert run_reg("query", windows)[0] == 0
    assert run_reg("query", made, "/reg:32")[0] == 0
    wine.reg("add", made, "/reg:32", "/f")
    assert wine.reg("query", wine_place, check=False).returncode == 0
    if windows != wine_place:
        assert wine.reg("query", windows, check=False).returncode == 1
        wine.reg("delete", wine_place, "/f", check=False)


def test_hkcr_wow6432node_is_not_redirected_twice(run_reg, wine):
    # Windows never redirects a path naming Wow6432Node; Wine 8.0 does not find this one.
    key = "HKCR\\Wow6432Node\\ImsViewsTwice"
    assert run_reg("add", key, "/f")[0] == 0
    assert run_reg("query", key, "/reg:32")[0] == 0
    wine.reg("add", key, "/f")
    assert wine.reg("query", key, "/reg:32", check=False).returncode == 1
    wine.reg("delete", key, "/f", check=False)


# Wine 8.0's reg.exe has no SAVE, RESTORE, LOAD or UNLOAD: these are checked on ours alone.


def test_save_and_restore_in_a_view(run_reg, workdir):
    assert run_reg("add", f"{LM}\\S", "/v", "x", "/d", "32", "/reg:32", "/f")[0] == 0
    assert run_reg("add", f"{LM}\\S", "/v", "x", "/d", "64", "/f")[0] == 0
    assert run_reg("save", f"{LM}\\S", "s.hiv", "/y", "/reg:32")[0] == 0
    assert run_reg("add", f"{LM}\\R", "/reg:32", "/f")[0] == 0
    assert run_reg("restore", f"{LM}\\R", "s.hiv", "/reg:32")[0] == 0
    rc, out, err = run_reg("query", f"{LM32}\\R")
    assert (rc, err) == (0, "") and "    x    REG_SZ    32\n" in out
    assert run_reg("query", f"{LM}\\R")[0] == 1
    assert run_reg("restore", f"{LM}\\R", "s.hiv", "/reg:64")[0] == 1  # no 64-bit R


def test_load_and_unload_ignore_the_view(run_reg, workdir):
    assert run_reg("add", f"{LM}\\H", "/v", "x", "/d", "1", "/f")[0] == 0
    assert run_reg("save", f"{LM}\\H", "h.hiv", "/y")[0] == 0
    assert run_reg("load", "HKU\\ImsViews", "h.hiv", "/reg:32")[0] == 0
    rc, out, err = run_reg("query", "HKU\\ImsViews", "/reg:32")
    assert rc == 0 and "    x    REG_SZ    1\n" in out
    assert run_reg("unload", "HKU\\ImsViews", "/reg:64")[0] == 0
    assert run_reg("query", "HKU\\ImsViews")[0] == 1
    assert run_reg("load", "HKU\\ImsViews", "h.hiv", "/reg:32", "/reg:64")[0] == 1
