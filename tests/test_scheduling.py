"""The suite's own pytest-xdist scheduling (tests/conftest.py): which tests share a process,
and which modules start first."""

import types

import pytest

from tests import conftest as suite


class _Config:
    """What xdist's scheduler reads of a `pytest -n 2 --dist loadfile` configuration."""

    def __init__(self, dist="loadfile"):
        self.option = types.SimpleNamespace(loadscopereorder=True, dist=dist, tx=["popen"] * 2,
                                            numprocesses=2)

    def getvalue(self, name):
        return getattr(self.option, name)


def test_loadfile_keeps_a_module_together_except_the_shared_and_the_split_ones():
    pytest.importorskip("xdist")
    config = _Config()
    scheduling = suite.pytest_xdist_make_scheduler(config, None)
    scope = scheduling._split_scope
    assert scope("tests/reskeras/test_train.py::test_a[x-1]") == "tests/reskeras/test_train.py"
    assert scope("tests/reskeras/test_train.py::test_b") == "tests/reskeras/test_train.py"
    # the core-number tests read the tiny TAT study of test_study_shaping's process
    assert scope("tests/reskeras/test_core_number.py::test_c[plain14-bn-s0-13]") == \
        "tests/reskeras/test_study_shaping.py"
    # the suite's one Hyperband search serves tuning's and export's tests; one trained and
    # exported digits run serves four export modules
    assert scope("tests/export/test_tuner.py::test_t") == "tests/tuning/test_search.py"
    assert {scope(f"tests/export/{m}.py::t") for m in (
        "test_savedmodel", "test_formats", "test_layout", "test_cli")} == {
        "tests/export/test_savedmodel.py"}
    assert scope("tests/export/test_model_file.py::t") == "tests/export/test_model_file.py"
    # each memory test in a process of its own
    assert scope("tests/tuning/test_memory.py::test_m[in-process-100-100]") == \
        "tests/tuning/test_memory.py::test_m[in-process-100-100]"
    assert scope("reskeras/study/judgment/rates.py::reskeras.study.judgment.rates") == \
        "reskeras/study/judgment/rates.py"
    # xdist's own order (most tests first) is off: the collection's order counts
    assert config.option.loadscopereorder is False
    assert suite.pytest_xdist_make_scheduler(_Config("load"), None) is None


def test_the_longest_modules_are_collected_first_and_the_rest_keep_their_order():
    items = [types.SimpleNamespace(nodeid=n) for n in (
        "tests/a/test_x.py::t1", "tests/reskeras/test_study.py::t2", "tests/a/test_y.py::t3",
        "tests/reskeras/test_study_shaping.py::t4", "tests/a/test_x.py::t5",
        "tests/reskeras/test_core_number.py::t6", "tests/reskeras/test_study.py::t7")]
    suite.pytest_collection_modifyitems(items)
    assert [i.nodeid.rsplit("::", 1)[1] for i in items] == [
        "t4", "t6", "t2", "t7", "t1", "t3", "t5"]
    assert suite.LONGEST_FIRST[:4] == tuple(f"tests/{m}.py" for m in (
        "tuning/test_memory", "reskeras/test_study_shaping", "reskeras/test_core_number",
        "reskeras/test_study"))
