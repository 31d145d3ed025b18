"""The scoring engine: cached, packed and incremental paths equal the plain full-sequence path."""

from __future__ import annotations

import pytest
import torch

from rlprompt.errors import ConfigError
from rlprompt.lm import NonFiniteScoresError, ScoringEngine
from rlprompt.lm.template import Template

TEXTS = [
    "the movie was great .",
    "a boring film , far too long and bad , i hated it .",
    "ok",
    "what is the description of this entity ?",
]
PROMPTS = [" it was", "", " all in all the review is", " overall"]
TOL = 1e-4


def test_cached_equals_full(tiny_lm):
    eng = ScoringEngine(tiny_lm, [" terrible", " great"])
    cached = eng.score(PROMPTS, TEXTS)
    full = eng.score(PROMPTS, TEXTS, use_cache=False)
    assert cached.shape == (len(PROMPTS), len(TEXTS), 2)
    torch.testing.assert_close(cached, full, atol=TOL, rtol=0)
    # real log-probabilities: below zero and normalised over the vocabulary, not the classes
    assert bool((cached < 0).all()) and bool((cached.exp().sum(-1) < 1).all())


def test_token_prompts_equal_text_prompts(tiny_lm):
    eng = ScoringEngine(tiny_lm, [" terrible", " great"])
    ids = [eng.prompt_tokens(p) for p in PROMPTS]
    torch.testing.assert_close(eng.score(ids, TEXTS), eng.score(PROMPTS, TEXTS), atol=TOL, rtol=0)
    assert eng.decode(ids[0]) == " it was"


@pytest.mark.parametrize("max_packed", [1, 3, 64])
def test_packing_chunks_do_not_change_scores(tiny_lm, max_packed):
    ref = ScoringEngine(tiny_lm, [" terrible", " great"]).score(PROMPTS, TEXTS, use_cache=False)
    eng = ScoringEngine(tiny_lm, [" terrible", " great"], max_packed_prompts=max_packed, max_batch_tokens=64)
    torch.testing.assert_close(eng.score(PROMPTS, TEXTS), ref, atol=TOL, rtol=0)


def test_example_chunks_without_keeping_caches(tiny_lm):
    eng = ScoringEngine(tiny_lm, [" terrible", " great"], cache_examples=3)
    ref = eng.score(PROMPTS, TEXTS, use_cache=False)
    torch.testing.assert_close(eng.score(PROMPTS, TEXTS), ref, atol=TOL, rtol=0)


def test_tail_and_multi_token_verbalizers(tiny_lm):
    eng = ScoringEngine(tiny_lm, [" terrible film", " great"], template="{sentence} {prompt} all in all it was")
    assert [len(v) for v in eng.verbalizer_ids] == [2, 1]
    torch.testing.assert_close(eng.score(PROMPTS, TEXTS), eng.score(PROMPTS, TEXTS, use_cache=False), atol=TOL, rtol=0)


def test_prompt_before_input_uses_the_plain_path(tiny_lm):
    eng = ScoringEngine(tiny_lm, [" terrible", " great"], template="{prompt} review: {sentence} it was")
    assert not eng.cacheable
    out = eng.score(PROMPTS, TEXTS)
    assert out.shape == (4, 4, 2)
    with pytest.raises(ConfigError, match="cannot be cached"):
        eng.score(PROMPTS, TEXTS, use_cache=True)
    with pytest.raises(ConfigError, match="incremental"):
        eng.start(2, TEXTS)


def test_full_path_matches_a_plain_transformers_forward(tiny_lm):
    eng = ScoringEngine(tiny_lm, [" terrible", " great"])
    text, prompt = TEXTS[1], " it was"
    ids = tiny_lm.tokenizer(text + prompt, return_tensors="pt").input_ids.to(tiny_lm.device)
    logp = torch.log_softmax(tiny_lm.model(input_ids=ids).logits[0, -1], -1)
    want = logp[[eng.verbalizer_ids[0][0], eng.verbalizer_ids[1][0]]]
    torch.testing.assert_close(eng.score([prompt], [text])[0, 0], want, atol=TOL, rtol=0)


@pytest.mark.parametrize("template", ["{sentence} {prompt}", "{sentence} {prompt} it was"])
@pytest.mark.parametrize("verbalizers", [[" terrible", " great"], [" terrible film", " great"]])
def test_incremental_extension_equals_full(tiny_lm, template, verbalizers):
    eng = ScoringEngine(tiny_lm, verbalizers, template=template)
    prompts = [eng.prompt_tokens(" all in all the"), eng.prompt_tokens(" it was great and")]
    n = min(len(p) for p in prompts)
    state = eng.start(2, TEXTS)
    torch.testing.assert_close(state.logprobs, eng.score([[], []], TEXTS, use_cache=False), atol=TOL, rtol=0)
    for t in range(n):
        got = state.extend([prompts[0][t], prompts[1][t]], want_hidden=True)
        want = eng.score([p[: t + 1] for p in prompts], TEXTS, use_cache=False)
        torch.testing.assert_close(got, want, atol=TOL, rtol=0)
        assert state.hidden.shape == (2, len(TEXTS), tiny_lm.model.config.hidden_size)
    assert state.length == n and state.tokens[0] == prompts[0][:n]


def test_incremental_costs_one_token_per_example(tiny_lm):
    eng = ScoringEngine(tiny_lm, [" terrible", " great"])
    state = eng.start(3, TEXTS)
    before = eng.counters.copy()
    state.extend([5, 6, 7])
    spent = eng.counters - before
    assert spent.forward_tokens == 3 * len(TEXTS)
    assert spent.prompt_evals == 3 and spent.example_evals == 3 * len(TEXTS)


def test_counters_count_prompt_tokens_only_after_the_cache(tiny_lm):
    eng = ScoringEngine(tiny_lm, [" terrible", " great"])
    eng.score([" it"], TEXTS)  # builds the input cache
    before = eng.counters.copy()
    prompts = [[10, 11, 12], [13, 14, 15]]
    eng.score(prompts, TEXTS)
    spent = eng.counters - before
    assert spent.forward_tokens == 6 * len(TEXTS)
    assert spent.prompt_evals == 2 and spent.forward_calls == 1 and spent.seconds > 0


@pytest.mark.parametrize("verbalizers", [[" terrible", " great"], [" terrible film", " great"]])
def test_soft_suffix_equals_the_same_tokens(tiny_lm, verbalizers):
    eng = ScoringEngine(tiny_lm, verbalizers, template="{sentence} {prompt} it was")
    ids = [eng.prompt_tokens(" all in all"), eng.prompt_tokens(" the review")]
    n = min(len(i) for i in ids)
    ids = [i[:n] for i in ids]
    embeds = tiny_lm.input_embeddings()(torch.tensor(ids, device=tiny_lm.device))
    torch.testing.assert_close(eng.score_soft(embeds, TEXTS), eng.score(ids, TEXTS, use_cache=False), atol=TOL, rtol=0)


def test_soft_prefix_matches_plain_forward(tiny_lm):
    eng = ScoringEngine(tiny_lm, [" terrible", " great"])
    torch.manual_seed(0)
    soft = torch.randn(2, 3, tiny_lm.model.config.hidden_size, device=tiny_lm.device) * 0.02
    out = eng.score_soft(soft, TEXTS, placement="prefix")
    table = tiny_lm.input_embeddings()
    for p in range(2):
        for e, text in enumerate(TEXTS):
            ids = torch.tensor([tiny_lm.tokenizer(text).input_ids], device=tiny_lm.device)
            seq = torch.cat([soft[p : p + 1], table(ids)], dim=1)
            logp = torch.log_softmax(tiny_lm.model(inputs_embeds=seq).logits[0, -1], -1)
            want = logp[[eng.verbalizer_ids[0][0], eng.verbalizer_ids[1][0]]]
            torch.testing.assert_close(out[p, e], want, atol=TOL, rtol=0)


@pytest.mark.parametrize("placement", ["suffix", "prefix"])
def test_soft_prompt_gradients_flow_into_the_prompt_only(tiny_lm, placement):
    eng = ScoringEngine(tiny_lm, [" terrible", " great"])
    soft = (torch.randn(1, 2, tiny_lm.model.config.hidden_size, device=tiny_lm.device) * 0.02).requires_grad_(True)
    before = eng.counters.copy()
    out = eng.score_soft(soft, TEXTS, placement=placement, grad=True)
    loss = torch.nn.functional.cross_entropy(out[0], torch.tensor([1, 0, 1, 0], device=out.device))
    loss.backward()
    assert soft.grad is not None and float(soft.grad.abs().sum()) > 0
    assert all(p.grad is None for p in tiny_lm.model.parameters())
    spent = eng.counters - before
    # every position run with the graph kept is counted for the backward pass as well
    assert spent.backward_tokens > 0
    if placement == "prefix":
        assert spent.backward_tokens == spent.forward_tokens


def test_soft_extension_equals_token_extension(tiny_lm):
    eng = ScoringEngine(tiny_lm, [" terrible", " great"])
    table = tiny_lm.input_embeddings()
    a, b = eng.start(2, TEXTS), eng.start(2, TEXTS)
    for toks in ([5, 9], [30, 40]):
        got = a.extend(embeds=table(torch.tensor(toks, device=tiny_lm.device)))
        want = b.extend(toks)
        torch.testing.assert_close(got, want, atol=TOL, rtol=0)


def test_classes_normalisation_is_the_class_softmax(tiny_lm):
    vocab = ScoringEngine(tiny_lm, [" terrible", " great"]).score(PROMPTS, TEXTS)
    classes = ScoringEngine(tiny_lm, [" terrible", " great"], normalize="classes").score(PROMPTS, TEXTS)
    torch.testing.assert_close(classes, torch.log_softmax(vocab, -1), atol=TOL, rtol=0)
    with pytest.raises(ConfigError, match="single-token"):
        ScoringEngine(tiny_lm, [" terrible film", " great"], normalize="classes")


def test_masked_lm_reads_at_the_mask(tiny_masked_lm):
    lm = tiny_masked_lm
    eng = ScoringEngine(lm, [" terrible", " great"])
    assert eng.template.text == "{sentence} {prompt} <mask> ."
    out = eng.score([" it was"], TEXTS[:2])
    assert out.shape == (1, 2, 2)
    text = TEXTS[0] + " it was" + lm.tokenizer.mask_token + " ."
    ids = torch.tensor([lm.tokenizer(text).input_ids], device=lm.device)
    logits = lm.model(input_ids=ids).logits[0]
    at = int((ids[0] == lm.tokenizer.mask_token_id).nonzero())
    want = torch.log_softmax(logits[at], -1)[[eng.verbalizer_ids[0][0], eng.verbalizer_ids[1][0]]]
    torch.testing.assert_close(out[0, 0], want, atol=TOL, rtol=0)


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verbalizers", "match"),
    [
        ([" great"], "at least two"),
        ([" terrible", ""], "empty"),
        ([" terrible", "  "], "empty"),
        ([" great", " great"], "same tokens"),
    ],
)
def test_bad_verbalizers(tiny_lm, verbalizers, match):
    with pytest.raises(ConfigError, match=match):
        ScoringEngine(tiny_lm, verbalizers)


def test_verbalizer_missing_from_a_word_level_vocabulary():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from rlprompt.lm.loading import _freeze

    vocab = {"<unk>": 0, "<pad>": 1, "good": 2, "bad": 3, "movie": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>")
    cfg = LlamaConfig(vocab_size=5, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1)
    lm = _freeze("word-level", LlamaForCausalLM(cfg), fast, "causal", torch.device("cpu"))
    with pytest.raises(ConfigError, match="'splendid' is not in the vocabulary"):
        ScoringEngine(lm, ["good", "splendid"])


def test_masked_lm_needs_single_token_verbalizers(tiny_masked_lm):
    with pytest.raises(ConfigError, match="masked LM reads one token"):
        ScoringEngine(tiny_masked_lm, [" terrible film", " great"])


def test_empty_batches_and_bad_prompts(tiny_lm):
    eng = ScoringEngine(tiny_lm, [" terrible", " great"])
    with pytest.raises(ConfigError, match="empty prompt batch"):
        eng.score([], TEXTS)
    with pytest.raises(ConfigError, match="no examples"):
        eng.score([" it"], [])
    with pytest.raises(ConfigError, match="outside the vocabulary"):
        eng.score([[10**6]], TEXTS)
    with pytest.raises(ConfigError, match="beyond the 256-token context"):
        eng.score([" great" * 300], TEXTS)
    with pytest.raises(ConfigError, match="beyond the 256-token context"):
        eng.score([" great" * 300], TEXTS, use_cache=False)
    state = eng.start(2, TEXTS)
    with pytest.raises(ConfigError, match="needs 2 tokens"):
        state.extend([1])
    with pytest.raises(ConfigError, match="either tokens or embeds"):
        state.extend()


def test_bad_soft_prompts(tiny_lm):
    eng = ScoringEngine(tiny_lm, [" terrible", " great"])
    with pytest.raises(ConfigError, match="soft prompts must be"):
        eng.score_soft(torch.zeros(1, 2, 7), TEXTS)
    with pytest.raises(ConfigError, match="T >= 1"):
        eng.score_soft(torch.zeros(1, 0, 32), TEXTS)
    with pytest.raises(ConfigError, match="placement"):
        eng.score_soft(torch.zeros(1, 2, 32), TEXTS, placement="middle")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("template", "match"),
    [
        ("{prompt} only", "{sentence} is missing"),
        ("{sentence} {sentence} {prompt}", "appears 2 times"),
        ("{sentence} {prompt} {label}", "unknown placeholder"),
        ("{sentence} {prompt} <mask>", "only masked LMs"),
    ],
)
def test_bad_templates(tiny_lm, template, match):
    with pytest.raises(ConfigError, match=match):
        ScoringEngine(tiny_lm, [" terrible", " great"], template=template)


def test_masked_template_needs_a_mask():
    with pytest.raises(ConfigError, match="exactly one <mask>"):
        Template.parse("{sentence} {prompt}", masked=True)


def test_template_segments_keep_bpe_boundaries():
    t = Template.parse("{sentence} {prompt}")
    assert t.segments("a film .", " It was") == ("a film .", " It was", "")
    assert t.segments("a film .", "It was") == ("a film .", " It was", "")
    assert t.render("a film .", "") == "a film ."
    t = Template.parse("{prompt} Review: {sentence} Sentiment:")
    assert t.segments("bad", "Classify") == ("", "Classify", " Review: bad Sentiment:")


def test_nan_logits_are_reported(tiny_lm):
    eng = ScoringEngine(build_broken(tiny_lm), [" terrible", " great"])
    with pytest.raises(NonFiniteScoresError, match="NaN/infinite"):
        eng.score([" it was"], TEXTS)


def build_broken(lm):  # noqa: ANN001, ANN201
    """A copy of the tiny LM whose final norm weights are NaN."""
    import copy

    from rlprompt.lm.loading import _freeze

    broken = _freeze("broken", copy.deepcopy(lm.model), lm.tokenizer, "causal", torch.device("cpu"))
    with torch.no_grad():  # after loading, which refuses NaN weights: the engine must still catch NaN scores
        broken.model.model.norm.weight.fill_(float("nan"))
    return broken


# -- the real model -------------------------------------------------------------------


@pytest.mark.integration
def test_smollm2_cached_and_incremental_equal_full(smollm32, fsc16):
    from rlprompt.tasks import load_fewshot

    task = load_fewshot(fsc16, "sst-2", 42)
    texts = task.texts("train")[:12]
    eng = ScoringEngine(smollm32, task.verbalizers)
    prompts = [" It was", "", " All in all, the movie is", " Overall"]
    torch.testing.assert_close(eng.score(prompts, texts), eng.score(prompts, texts, use_cache=False), atol=1e-3, rtol=0)
    ids = eng.prompt_tokens(" All in all, the movie is")
    state = eng.start(1, texts)
    for t in range(len(ids)):
        got = state.extend([ids[t]])
    torch.testing.assert_close(got, eng.score([ids], texts, use_cache=False), atol=1e-3, rtol=0)
