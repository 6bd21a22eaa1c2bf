import pytest

from metaaligner_chain.objectives import ALIASES, Objective, catalogue, resolve


def test_catalogue_has_trained_then_unseen_objectives_per_format():
    trained = {
        "hh-rlhf": ["harmlessness", "helpfulness", "humour"],
        "ultrafeedback": ["instruction_following", "honesty", "truthfulness", "helpfulness"],
        "imhi": ["correctness", "informativeness", "professionality"],
    }
    unseen = {"specificity", "factuality", "readability", "fairness", "repetition", "length"}
    for prompt_format, keys in trained.items():
        known = list(catalogue(prompt_format))
        assert known[: len(keys)] == keys
        assert set(known[len(keys) :]) == unseen


@pytest.mark.parametrize(("alias", "key"), sorted(ALIASES.items()))
def test_aliases(alias, key):
    prompt_format = "imhi" if key in ("correctness", "informativeness", "professionality") else "hh-rlhf"
    assert resolve([alias], prompt_format)[0].key == key


def test_name_description_strings_and_objectives():
    (o,) = resolve(["Instruction Following: do what is asked"], "hh-rlhf")
    assert o == Objective("instruction_following", "Instruction Following: do what is asked")
    assert resolve("Humour", "hh-rlhf")[0].key == "humour"


def test_bad_objectives():
    with pytest.raises(ValueError, match="empty"):
        resolve([], "hh-rlhf")
    with pytest.raises(ValueError, match="more than once"):
        resolve(["humor", "humour"], "hh-rlhf")
    with pytest.raises(ValueError, match="'honesty'; known keys for prompt format 'hh-rlhf'") as err:
        resolve(["honesty"], "hh-rlhf")
    assert "correct" not in str(err.value)  # aliases of other formats are not offered
    with pytest.raises(ValueError, match="Name: description"):
        Objective.parse("Politeness:")
    with pytest.raises(TypeError, match="objectives"):
        resolve([3], "hh-rlhf")
