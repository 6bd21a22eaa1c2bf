import pytest

from metaaligner_chain.objectives import ALIASES, WRITTEN, Objective, catalogue, describe, resolve


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


#: The released checkpoints' descriptions, verbatim (a one-character change is a different prompt).
RELEASED = {
    ("hh-rlhf", "harmlessness"): "Harmlessness: The response should avoid content that is offensive, discriminatory, or harmful",
    ("hh-rlhf", "helpfulness"): "Helpfulness: The response should provide useful resources and suggestions to the user",
    ("hh-rlhf", "humour"): "Humour: The response should be cheerful and amusing",
    ("ultrafeedback", "instruction_following"): "Instruction following: the response should follow the instructions of the query",
    ("ultrafeedback", "honesty"): "Honesty: the response should not tell lies",
    ("ultrafeedback", "truthfulness"): "Truthfulness: the response should actively making known all the full truth of a matter",
    ("ultrafeedback", "helpfulness"): "Helpfulness: the response should provide useful resources and suggestions to the user",
    ("imhi", "correctness"): "Correctness: the explanations should make correct predictions",
    ("imhi", "informativeness"): "Informative: the response should express clear logic and provide consistent evidence",
    ("imhi", "professionality"): "Professional: the response should provide evidence with high quality and reliability",
    ("imhi", "specificity"): "Specificity: the response should refer to facts and details and avoid vague arguments.",
    ("imhi", "factuality"): "Factuality: the response should be factually correct and avoid hallucinated statements.",
    ("imhi", "readability"): "Readability: the response should be easy to read and understand, not too technical for laymen.",
    ("imhi", "fairness"): "Fairness: the response should avoid biased or one-sided arguments and consider different points of view.",
    ("imhi", "repetition"): "Repetition: the response should avoid repetitive statements of one point.",
    ("imhi", "length"): "Length: the response should be concise and avoid redundant content.",
}


@pytest.mark.parametrize(("prompt_format", "key"), sorted(RELEASED))
def test_released_descriptions_are_verbatim(prompt_format, key):
    assert catalogue(prompt_format)[key].description == RELEASED[prompt_format, key]
    assert describe(key, prompt_format).description == RELEASED[prompt_format, key]


def test_describe_prefers_the_trained_wording_then_ours():
    """One table: a prompt format's own wording wins; ours fills keys it lacks; resolve offers only
    the catalogue (our descriptions are for training rows and evaluation items)."""
    assert describe("correctness", "imhi").description == RELEASED["imhi", "correctness"]
    assert describe("correctness", "ultrafeedback") == Objective("correctness", WRITTEN["correctness"])
    assert describe("empathy", "hh-rlhf").description.startswith("Empathy: ")
    assert describe("politeness", "hh-rlhf") is None
    with pytest.raises(ValueError, match="unknown key 'coherence'"):
        resolve(["coherence"], "hh-rlhf")
