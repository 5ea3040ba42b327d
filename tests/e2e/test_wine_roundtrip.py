"""Round trips of .reg files between our `reg` and Wine's reg.exe: what we export imports into
Wine with the same `reg query` and export; what Wine exports imports into ours the same way."""

import os

import pytest

import wine_oracle
from wine_oracle import canonical_query, canonical_reg, wine_value_sort_key

BASE = r"HKCU\Software\ImsWineRoundTrip"
BASE_LONG = r"HKEY_CURRENT_USER\Software\ImsWineRoundTrip"

# Every value `reg add` can make: (name or None for the default value, type, /d or None).
# Listed out of alphabetical order on purpose: Windows and we keep creation order.
VALUES = [
    (None, "REG_SZ", "default data"),
    ("Sz", "REG_SZ", 'a "quoted" \\ back\\slash value'),
    ("Unicode", "REG_SZ", "café € naïve"),
    ("Expand", "REG_EXPAND_SZ", "%SystemRoot%\\system32;%ProgramFiles%\\IMS\\bin"),
    ("Multi", "REG_MULTI_SZ", "one\\0two\\0three café"),
    ("Dword", "REG_DWORD", "0x1234abcd"),
    ("DwordDecimal", "REG_DWORD", "4294967295"),
    ("BigEndian", "REG_DWORD_BIG_ENDIAN", "0x01020304"),
    ("Qword", "REG_QWORD", "0x123456789abcdef0"),
    ("Binary", "REG_BINARY", bytes(range(48)).hex()),  # wraps at 80 columns
    ("None", "REG_NONE", "xyz"),
    ("EmptySz", "REG_SZ", ""),
    ("EmptyBinary", "REG_BINARY", None),
    ("EmptyMulti", "REG_MULTI_SZ", ""),
    ("EmptyNone", "REG_NONE", None),
    ('Quote"Back\\slash', "REG_SZ", "name with a quote and a backslash"),
    ("Café", "REG_SZ", "non-ASCII name"),
    ("L" * 90, "REG_BINARY", "00112233"),  # the name alone passes the wrap column
]

# Subkeys (relative to the test's base key) and their values. "Sub1" gets no values of its
# own (it is made as Sub2's parent); "Empty" is a leaf whose only value is then deleted.
SUBKEYS = [
    ("With Space", [(None, "REG_SZ", "only the default")]),
    ("Sub1\\Sub2", [("Deep", "REG_SZ", "deep value"), ("Count", "REG_DWORD", "7")]),
    ("Café Ünï", [("Wert", "REG_DWORD", "42")]),
    ("Empty", []),
]

# A REGEDIT4 file in CP1252 (0xE9 = é, 0x80 = €); hex(2)/hex(7) data are ANSI bytes there.
ANSI_REG = (
    b"REGEDIT4\r\n\r\n"
    b"[HKEY_CURRENT_USER\\Software\\ImsWineRoundTrip\\Ansi]\r\n"
    b'@="d\xe9faut"\r\n'
    b'"Str"="caf\xe9 \\"q\\" \\\\ end \x80"\r\n'
    b'"Caf\xe9"=dword:0000002a\r\n'
    b'"Bin"=hex:01,02,03\r\n'
    b'"Exp"=hex(2):25,54,45,4d,50,25,5c,63,61,66,e9,00\r\n'
    b'"Multi"=hex(7):61,00,63,61,66,e9,00,00\r\n'
    b"\r\n"
    b"[HKEY_CURRENT_USER\\Software\\ImsWineRoundTrip\\Ansi\\Sub\xe9]\r\n"
    b'"x"="y"\r\n'
)


def add_args(key, name, typ, data):
    args = ["add", key]
    args += ["/ve"] if name is None else ["/v", name]
    args += ["/t", typ]
    if data is not None:
        args += ["/d", data]
    return args + ["/f"]


def populate(run, base, alphabetical=False):
    """Make the test tree under base with run(*reg_args), ours or Wine's."""
    values = sorted(VALUES, key=lambda v: wine_value_sort_key(v[0])) if alphabetical else VALUES
    for name, typ, data in values:
        run(*add_args(base, name, typ, data))
    for sub, subvalues in SUBKEYS:
        key = f"{base}\\{sub}"
        if not subvalues:
            run("add", key, "/f")  # sets (Default) to "" ...
            run("delete", key, "/ve", "/f")  # ... which goes again: a key with no values
        if alphabetical:
            subvalues = sorted(subvalues, key=lambda v: wine_value_sort_key(v[0]))
        for name, typ, data in subvalues:
            run(*add_args(key, name, typ, data))


@pytest.fixture(scope="module")
def wine_prefix():
    """One Wine prefix for the module ($IMS_WINE_PREFIX when set, to skip the ~12 s of
    making one), with a persistent wineserver stopped at the end."""
    if not wine_oracle.wine_available():
        msg = (
            "wine is not installed (apt-get install wine wine64): "
            "the .reg round trip with Wine cannot be checked"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    prefix = wine_oracle.WinePrefix(os.environ.get("IMS_WINE_PREFIX") or None)
    try:
        prefix.start()
        if prefix.reused:
            prefix.reg("delete", BASE, "/f", check=False)  # leftovers of an earlier run
        yield prefix
    finally:
        prefix.stop()  # a wineserver -p outlives its clients: never leave one behind


@pytest.fixture
def ours(run_reg):
    """ours(*args) -> stdout of our reg, which must succeed."""

    def run(*args):
        rc, out, err = run_reg(*args)
        assert rc == 0, f"reg {' '.join(args)}: rc={rc}\nstdout: {out}\nstderr: {err}"
        return out

    return run


def wine_export(wine, key, path):
    wine.reg("export", key, path, "/y")
    return path.read_bytes()


def ours_export(ours, key, path):
    ours("export", key, str(path), "/y")
    return path.read_bytes()


def assert_same_query(ours, wine, key):
    """`reg query KEY` and `reg query KEY /s` print the same, value order aside."""
    for extra in ([], ["/s"]):
        got = canonical_query(ours("query", key, *extra), wine=False)
        want = canonical_query(wine.reg("query", key, *extra).stdout, wine=True)
        assert got == want, f"reg query {key} {' '.join(extra)}: ours (got) vs Wine (want)"


def test_our_export_imports_into_wine(wine_prefix, ours, tmp_path):
    base = BASE + "\\FromOurs"
    populate(ours, base)
    mine = ours_export(ours, base, tmp_path / "ours.reg")

    wine_prefix.reg("import", tmp_path / "ours.reg")
    theirs = wine_export(wine_prefix, base, tmp_path / "wine.reg")

    assert canonical_reg(mine) == canonical_reg(theirs)
    assert_same_query(ours, wine_prefix, base)


def test_wine_export_imports_into_ours(wine_prefix, ours, tmp_path):
    base = BASE + "\\FromWine"
    populate(wine_prefix.reg, base)
    theirs = wine_export(wine_prefix, base, tmp_path / "wine.reg")

    ours("import", str(tmp_path / "wine.reg"))
    mine = ours_export(ours, base, tmp_path / "ours.reg")

    assert canonical_reg(mine) == canonical_reg(theirs)
    # An import keeps the file's value order, so the export gives the same bytes back.
    assert mine == theirs
    assert_same_query(ours, wine_prefix, base)


def test_alphabetical_exports_are_byte_identical(wine_prefix, ours, tmp_path):
    # Made independently on each side, in the order Wine sorts values in.
    base = BASE + "\\Alphabetical"
    populate(ours, base, alphabetical=True)
    populate(wine_prefix.reg, base, alphabetical=True)

    mine = ours_export(ours, base, tmp_path / "ours.reg")
    theirs = wine_export(wine_prefix, base, tmp_path / "wine.reg")

    assert mine == theirs, f"see {tmp_path}/ours.reg and {tmp_path}/wine.reg"


def test_regedit4_cp1252_file_imports_the_same(wine_prefix, ours, tmp_path):
    path = tmp_path / "ansi.reg"
    path.write_bytes(ANSI_REG)
    ours("import", str(path))
    wine_prefix.reg("import", path)

    key = BASE + "\\Ansi"
    mine = ours_export(ours, key, tmp_path / "ours.reg")
    theirs = wine_export(wine_prefix, key, tmp_path / "wine.reg")

    assert canonical_reg(mine) == canonical_reg(theirs)
    assert_same_query(ours, wine_prefix, key)
    # Not only the same as Wine: the CP1252 bytes became the right characters.
    text = wine_oracle.decode_reg(mine)
    assert f"[{BASE_LONG}\\Ansi\\Subé]" in text
    assert '@="défaut"' in text
    assert '"Str"="café \\"q\\" \\\\ end €"' in text
    assert '"Café"=dword:0000002a' in text
