"""vglaw.notebook: the parameters-cell validator the notebooks rely on."""

import pytest

from vglaw.workbook.params import NotebookParameterError, literal_assignments, resolve_parameters

PARAMS_CELL = 'dataset = "shapes"  # which dataset\nmax_epochs = 3  # epochs\nlr = 1e-4  # base LR\nsmoke = False  # quick run\ntag = None  # optional label\n'


def _ns(*cells, **values):
    ns = {"In": ["", *cells, "P = resolve_parameters(globals())"]}
    for cell in cells:
        ns.update(literal_assignments(cell) or {})
    ns.update(values)
    return ns


def test_literal_assignments_accepts_only_literals():
    assert literal_assignments(PARAMS_CELL) == {"dataset": "shapes", "max_epochs": 3, "lr": 1e-4,
                                                "smoke": False, "tag": None}
    assert literal_assignments("x = f(1)") is None
    assert literal_assignments("import os") is None
    assert literal_assignments("y: int = -3  # neg") == {"y": -3}


def test_defaults_and_overrides_resolve():
    p = resolve_parameters(_ns("import os", PARAMS_CELL, 'dataset = "refcoco+"\nlr = 1\n'))
    assert p.dataset == "refcoco+" and p.max_epochs == 3 and p.smoke is False
    assert isinstance(p.lr, float) and p.lr == 1.0  # an int given for a float parameter is widened


def test_misspelt_parameter_fails_naming_it_and_the_allowed():
    with pytest.raises(NotebookParameterError) as err:
        resolve_parameters(_ns(PARAMS_CELL, 'datset = "refcoco"\n'))
    msg = str(err.value)
    assert "'datset'" in msg and "did you mean 'dataset'" in msg and "max_epochs" in msg


@pytest.mark.parametrize("cell", ['max_epochs = "3"\n', "smoke = 1\n", "dataset = 3\n", "max_epochs = 2.5\n"])
def test_wrong_type_fails(cell):
    with pytest.raises(NotebookParameterError, match="must be"):
        resolve_parameters(_ns(PARAMS_CELL, cell))


def test_percent_twin_run_as_script(tmp_path):
    script = tmp_path / "nb.py"
    script.write_text('# %% [markdown]\n# Title\n\n# %% tags=["parameters"]\n' + PARAMS_CELL + "\n# %%\nx = 1\n")
    p = resolve_parameters({"__file__": str(script), "dataset": "refcocog", "max_epochs": 3, "lr": 1e-4,
                            "smoke": True, "tag": "a"})
    assert p.dataset == "refcocog" and p.smoke is True and p.tag == "a"


def test_no_parameters_cell_is_an_error():
    with pytest.raises(NotebookParameterError, match="No parameters cell"):
        resolve_parameters({"In": ["", "import os", "P = resolve_parameters(globals())"]})
