"""The committed copy of the seeds (tests/seeds/cells) is the spec CI runs against."""

import pytest
from seed_notebook import COPIED_SEEDS, SHARED_SEEDS, extract_cells, uncomment

SEEDS = sorted(p.name for p in COPIED_SEEDS.glob("*.txt"))


def test_all_five_seeds_are_committed():
    assert [s[:3] for s in SEEDS] == ["000", "001", "002", "003", "004"]


@pytest.mark.parametrize("name", SEEDS)
def test_committed_copy_matches_the_workspace_seed(name):
    shared = SHARED_SEEDS / name
    if not shared.is_file():
        pytest.skip("no ../shared/seeds here (a clean clone): the committed copy is the spec")
    assert (COPIED_SEEDS / name).read_text() == shared.read_text(), (
        f"seed {name} changed: copy it to tests/seeds/cells/ and update the tests"
    )


def test_extractor_reads_cells_tags_and_applies_renames():
    text = (
        "# Title\n\n```{code-cell} ipython3\n:tags: [skip-execution]\n\n# ! pip install x\n```\n"
        "\n```{code-cell} ipython3\nfrom flax import nnx\n"
        "a = jax.experimental.mutable_array(1)\n```\n\n```python\nnot a cell\n```\n"
    )
    skipped, cell = extract_cells(text)
    assert skipped.skipped and skipped.tags == ("skip-execution",)
    assert cell.source == "import nnx\na = jax.new_ref(1)\n" and not cell.skipped


def test_uncomment_keeps_code_drops_the_todo():
    src = "# TODO: does not work yet\n# @jax.vmap\n# def f(x):\n#   return x\n\n# print(f)\n"
    assert uncomment(src) == "@jax.vmap\ndef f(x):\n  return x\n\nprint(f)\n"


@pytest.mark.parametrize("name, count", [("000", 16), ("001", 15), ("002", 21), ("003", 14)])
def test_every_code_cell_is_found(name, count):
    (path,) = COPIED_SEEDS.glob(f"{name}_*.txt")
    assert len(extract_cells(path.read_text())) == count
