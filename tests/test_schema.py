import pytest

from healthgym_core.data.schema import BUILTIN_SCHEMAS, get_schema, load_schema_toml
from healthgym_core.errors import DataError

DEMO7_TABLE = [  # the upstream dtype table (reference section 1.5)
    (0, "VL", "real", 1, 1, 0, 1),
    (1, "CD4", "real", 1, 1, 1, 2),
    (2, "Gender", "bin", 2, 2, 2, 4),
    (3, "Ethnic", "cat", 4, 4, 4, 8),
    (4, "Base_Drug_Combo", "cat", 6, 4, 8, 14),
    (5, "Extra_PI", "cat", 6, 4, 14, 20),
    (6, "Extra_pk_En", "bin", 2, 2, 20, 22),
]


def test_demo7_layout_matches_upstream_table():
    rows = [
        (r.index, r.name, r.kind, r.num_classes, r.embedding_size, r.start, r.end)
        for r in BUILTIN_SCHEMAS["demo7"].layout()
    ]
    assert rows == DEMO7_TABLE


@pytest.mark.parametrize("name,width,emb", [("demo7", 22, 18), ("full10", 31, 27), ("full13", 37, 33)])
def test_builtin_widths(name, width, emb):
    s = BUILTIN_SCHEMAS[name]
    assert (s.width, s.embedding_width) == (width, emb)


def test_full10_spans():
    spans = {r.name: (r.start, r.end) for r in BUILTIN_SCHEMAS["full10"].layout()}
    assert spans["Rel_CD4"] == (2, 3) and spans["Comp_NNRTI"] == (19, 23) and spans["Extra_pk_En"] == (29, 31)


def test_schema_dict_round_trip():
    s = BUILTIN_SCHEMAS["full13"]
    from healthgym_core.data.schema import Schema

    assert Schema.from_dict(s.to_dict()) == s


GOOD = """
name = "clinic"
patient_column = "pid"
time_column = "month"
[[variables]]
name = "Sex"
kind = "binary"
codes = [1, 2]
labels = ["M", "F"]
[[variables]]
name = "Weight"
kind = "real"
[[variables]]
name = "Drug"
column = "drug code"
kind = "categorical"
codes = [10, 20, 30]
"""


def test_user_schema_moves_reals_first(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(GOOD)
    s = get_schema(p)
    assert [v.name for v in s.variables] == ["Weight", "Sex", "Drug"]
    assert s.width == 1 + 2 + 3 and s.embedding_width == 1 + 2 + 4
    assert s.variables[2].column == "drug code" and s.variables[2].labels == ("10", "20", "30")
    assert (s.patient_column, s.time_column) == ("pid", "month")


@pytest.mark.parametrize(
    "text,needle",
    [
        ("[[variables]]\nname='a'\nkind='real'\n[[", "not valid TOML"),
        ("name='x'", "lists no [[variables]]"),
        ("[[variables]]\nname='a'\nkind='fancy'", "kind must be real, binary or categorical"),
        ("[[variables]]\nname='a'\nkind='binary'\ncodes=[1,2,3]", "exactly 2 codes"),
        ("[[variables]]\nname='a'\nkind='categorical'\ncodes=[1,1]", "codes repeat"),
        ("[[variables]]\nname='a'\nkind='categorical'\ncodes=['x','y']", "list of integers"),
        ("[[variables]]\nname='a'\nkind='categorical'\ncodes=[1,2]\nlabels=['x']", "as long as codes"),
        ("[[variables]]\nname='a'\nkind='real'\n[[variables]]\nname='a'\nkind='real'", "listed twice"),
        ("[[variables]]\nname='a'\nkind='real'\ncodes=[1]", "takes no codes"),
        ("patient_column='a'\n[[variables]]\nname='a'\nkind='real'", "also a variable's column"),
        ("colour='red'\n[[variables]]\nname='a'\nkind='real'", "unknown key 'colour'"),
    ],
)
def test_bad_schema_files_name_the_problem(tmp_path, text, needle):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(DataError) as e:
        load_schema_toml(p)
    msg = str(e.value)
    assert needle in msg and str(p) in msg and "\n" not in msg


def test_unknown_schema_name():
    with pytest.raises(DataError, match="unknown schema"):
        get_schema("demo8")
