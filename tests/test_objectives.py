import pytest

from metaaligner_chain.objectives import ALIASES, Objective, catalogue, resolve, trained_keys


def test_catalogue_has_trained_and_unseen_objectives_per_format():
    assert trained_keys("hh-rlhf") == ("harmlessness", "helpfulness", "humour")
    assert trained_keys("ultrafeedback") == ("instruction_following", "honesty", "truthfulness", "helpfulness")
    assert trained_keys("imhi") == ("correctness", "informativeness", "professionality")
    unseen = {"specificity", "factuality", "readability", "fairness", "repetition", "length"}
    for prompt_format in ("hh-rlhf", "ultrafeedback", "imhi"):
        assert unseen <= set(catalogue(prompt_format))


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
