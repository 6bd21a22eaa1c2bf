"""MetaAlignerRunnable follows LangChain partner-package conventions: `max_tokens`, unknown keywords
rejected by name, typed schemas, `dumpd`/`loads`, and LangSmith's model fields on its runs."""

from __future__ import annotations

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.load import dumpd, dumps, load, loads
from langchain_core.messages import AIMessage

from metaaligner_chain import MetaAlignerRunnable


@pytest.fixture(scope="module")
def aligner(tiny_model_dir):
    return MetaAlignerRunnable(
        objectives=["harmlessness", "Politeness: be kind"],
        model=str(tiny_model_dir),
        prompt_format="hh-rlhf",
        max_tokens=12,
        retry_loops=False,  # one model call a run: the tiny model's rewrites all run to 12 tokens
    )


def test_max_tokens_is_max_new_tokens():
    assert MetaAlignerRunnable(objectives=["harmlessness"], max_tokens=7).max_new_tokens == 7
    assert MetaAlignerRunnable(objectives=["harmlessness"], max_new_tokens=7).max_new_tokens == 7


@pytest.mark.parametrize(
    ("keyword", "names"),
    [
        ("stop", "bound its length with `max_new_tokens`"),
        ("max_new_token", "did you mean `max_new_tokens`?"),
        ("temprature", "did you mean `temperature`?"),
        ("model_name", "name the aligner with `model`"),
    ],
)
def test_unknown_keywords_are_rejected_naming_the_field(keyword, names):
    with pytest.raises(ValueError, match=f"no setting `{keyword}`: .*{names.replace('?', '')}"):
        MetaAlignerRunnable(objectives=["harmlessness"], **{keyword: 1})


def test_schemas_are_typed(aligner):
    for schema in (aligner.get_input_schema(), aligner.get_output_schema()):
        json_schema = schema.model_json_schema()
        kinds = json_schema["anyOf"]
        assert {"type": "string"} in kinds and len(kinds) == 3  # str | message | dict
        assert "response" in str(json_schema) and "messages" in str(json_schema)


def test_serialization_round_trip(aligner):
    data = dumpd(aligner)
    assert data["id"] == ["metaaligner_chain", "MetaAlignerRunnable"]
    assert data["kwargs"]["objectives"] == ["harmlessness", "Politeness: be kind"]
    again = loads(
        dumps(aligner),
        valid_namespaces=["metaaligner_chain"],
        allowed_objects=[MetaAlignerRunnable],
    )
    assert again == aligner and again.max_new_tokens == 12
    assert (
        load(data, valid_namespaces=["metaaligner_chain"], allowed_objects=[MetaAlignerRunnable])
        == aligner
    )


class Recorder(BaseCallbackHandler):
    def __init__(self):
        self.chains, self.llm_starts, self.llm_ends = [], [], []

    def on_chain_start(self, serialized, inputs, *, metadata=None, **kwargs):
        self.chains.append(metadata)

    def on_llm_start(self, serialized, prompts, *, metadata=None, **kwargs):
        self.llm_starts.append((prompts, metadata, kwargs.get("name")))

    def on_llm_end(self, response, **kwargs):
        self.llm_ends.append(response.generations[0][0].message.usage_metadata)


async def test_runs_carry_the_model_fields_and_each_generation_is_a_model_call(aligner):
    """LangSmith's model fields on every run, and one LLM run per generation, with its tokens."""
    recorder = Recorder()
    out = aligner.invoke(AIMessage("Sleep eight hours."), {"callbacks": [recorder]})
    aligner.batch(["Sleep.", "Eat."], {"callbacks": [recorder]})
    list(aligner.stream("Sleep.", {"callbacks": [recorder]}))
    await aligner.ainvoke("Sleep.", {"callbacks": [recorder]})
    assert len(recorder.chains) == len(recorder.llm_starts) == len(recorder.llm_ends) == 5
    for metadata in recorder.chains + [m for _, m, _ in recorder.llm_starts]:
        assert metadata["ls_provider"] == "metaaligner" and metadata["ls_model_type"] == "llm"
        assert metadata["ls_model_name"] == aligner.model and metadata["ls_max_tokens"] == 12
    prompts, _, name = recorder.llm_starts[0]
    assert name == "MetaAligner model" and prompts[0].endswith(
        "| Answer: Sleep eight hours. | Edit: "
    )
    usage = out.response_metadata["metaaligner"]["usage"]
    assert (
        recorder.llm_ends[0] == usage and usage["output_tokens"] > 0 and usage["input_tokens"] > 0
    )
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert all(u and u["output_tokens"] > 0 for u in recorder.llm_ends)
