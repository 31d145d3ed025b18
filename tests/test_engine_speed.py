"""The scoring engine's speed machinery: per-example input caches (encoded once, whatever subset
asks), bounded memory, length-bucketed batches, in-place cache growth, and the soft prefix path
with multi-token verbalizers. Every fast path must still equal the plain full-sequence path."""

from __future__ import annotations

import pytest
import torch

from rlprompt.lm import ScoringEngine

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = ["great", "bad", "a film", "long and boring", "the acting was wonderful", "i hated it", "ok", "fine ."]
TEXTS = [" ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(1 + i % 5)) + " ." for i in range(24)]
PROMPTS = [" it was", "", " all in all the review is", " overall"]
TOL = 1e-4


def prompt_tokens(eng: ScoringEngine, prompts: list[str]) -> int:
    return sum(len(eng.prompt_tokens(p) + eng.template_tokens.tail(not eng.prompt_tokens(p))) for p in prompts)


def test_a_subset_after_the_whole_split_is_not_encoded_again(tiny_lm):
    eng = ScoringEngine(tiny_lm, [" terrible", " great"])
    eng.score(PROMPTS[:1], TEXTS)  # encodes every input once
    subset = [TEXTS[i] for i in (17, 3, 8, 21, 0, 11)]  # any order
    before = eng.counters.copy()
    got = eng.score(PROMPTS, subset)
    spent = eng.counters - before
    assert spent.forward_tokens == prompt_tokens(eng, PROMPTS) * len(subset)
    torch.testing.assert_close(got, eng.score(PROMPTS, subset, use_cache=False), atol=TOL, rtol=0)
    # incremental prompts and prepare() on another subset reuse the same entries
    before = eng.counters.copy()
    eng.prepare(TEXTS[5:15])
    state = eng.start(2, TEXTS[5:15])
    state.extend([10, 11])
    spent = eng.counters - before
    assert spent.forward_tokens == 2 * 10  # the two new tokens on ten rows, nothing else


def test_mixed_kept_and_new_examples_and_duplicates(tiny_lm):
    eng = ScoringEngine(tiny_lm, [" terrible", " great"])
    eng.score(PROMPTS[:1], TEXTS[:6])
    texts = [TEXTS[2], TEXTS[9], TEXTS[2], TEXTS[0], TEXTS[12]]
    before = eng.counters.copy()
    got = eng.score(PROMPTS, texts)
    encoded = (eng.counters - before).forward_tokens - prompt_tokens(eng, PROMPTS) * len(texts)
    lengths = sorted(len(eng.template_tokens.input(TEXTS[i])) for i in (9, 12))
    assert encoded == 2 * lengths[-1]  # only the two new inputs ran (padded to the longer one)
    torch.testing.assert_close(got, eng.score(PROMPTS, texts, use_cache=False), atol=TOL, rtol=0)


@pytest.mark.parametrize(("cache_examples", "cache_bytes"), [(5, None), (512, 20_000), (0, None)])
def test_the_input_cache_stays_within_its_bounds(tiny_lm, cache_examples, cache_bytes):
    eng = ScoringEngine(tiny_lm, [" terrible", " great"], cache_examples=cache_examples, cache_bytes=cache_bytes)
    got = eng.score(PROMPTS, TEXTS)
    assert eng.cached_examples <= cache_examples
    if cache_bytes is not None:
        assert 0 < eng.cached_bytes <= cache_bytes
    torch.testing.assert_close(got, eng.score(PROMPTS, TEXTS, use_cache=False), atol=TOL, rtol=0)
    state = eng.start(2, TEXTS[:9])
    for t in ([5, 6], [7, 8]):
        state.extend(t)
    torch.testing.assert_close(state.logprobs, eng.score([[5, 7], [6, 8]], TEXTS[:9], use_cache=False),
                               atol=TOL, rtol=0)


def test_a_one_off_pass_over_a_large_split_keeps_the_reused_examples(tiny_lm):
    eng = ScoringEngine(tiny_lm, [" terrible", " great"], cache_examples=8)
    train, other = TEXTS[:4], TEXTS[4:]
    eng.prepare(train)  # prepared (and reused) examples are evicted last
    eng.score(PROMPTS, other)  # 20 examples through an 8-entry cache
    assert eng.cached_examples <= 8
    before = eng.counters.copy()
    eng.score(PROMPTS, train)
    assert (eng.counters - before).forward_tokens == prompt_tokens(eng, PROMPTS) * len(train)


def test_length_buckets_pad_less_and_keep_the_order(tiny_lm):
    lengths = [len(tiny_lm.tokenizer(t).input_ids) for t in TEXTS]
    eng = ScoringEngine(tiny_lm, [" terrible film", " great"], template="{sentence} {prompt} it was",
                        max_batch_tokens=96)
    got = eng.score(PROMPTS, TEXTS)
    torch.testing.assert_close(got, eng.score(PROMPTS, TEXTS, use_cache=False), atol=TOL, rtol=0)
    fresh = ScoringEngine(tiny_lm, [" terrible", " great"], max_batch_tokens=96)
    fresh.prepare(TEXTS)
    # inputs ran in batches of similar length: less than every row padded to the longest
    assert fresh.counters.forward_tokens < len(TEXTS) * max(lengths)
    assert fresh.counters.forward_calls > 1


def test_soft_suffix_in_several_length_buckets_equals_the_same_tokens(tiny_lm):
    eng = ScoringEngine(tiny_lm, [" terrible film", " great"], template="{sentence} {prompt} it was",
                        max_batch_tokens=80)
    ids = [eng.prompt_tokens(" all in all")[:2], eng.prompt_tokens(" the review")[:2]]
    embeds = tiny_lm.input_embeddings()(torch.tensor(ids, device=tiny_lm.device))
    torch.testing.assert_close(eng.score_soft(embeds, TEXTS), eng.score(ids, TEXTS, use_cache=False),
                               atol=TOL, rtol=0)


def test_forwards_write_into_the_buffer_instead_of_copying_the_cache(tiny_lm):
    eng = ScoringEngine(tiny_lm, [" terrible", " great"], template="{sentence} {prompt} it was")
    state = eng.start(3, TEXTS[:5])
    buf = state._state.buf
    ptr, held = buf.keys.data_ptr(), buf.keys[:, :, :, : state._state.width].clone()
    for t in range(3):
        state.extend([20 + t, 30 + t, 40 + t])
    assert state._state.buf.keys.data_ptr() == ptr  # grown in place: no new cache per step
    torch.testing.assert_close(state._state.buf.keys[:, :, :, : held.shape[3]], held, atol=0, rtol=0)
    want = eng.score([[20, 21, 22], [30, 31, 32], [40, 41, 42]], TEXTS[:5], use_cache=False)
    torch.testing.assert_close(state.logprobs, want, atol=TOL, rtol=0)
    # beyond the room it starts with, the buffer regrows (rarely) and the scores stay right
    for t in range(3, 12):
        state.extend([20 + t, 30 + t, 40 + t])
    want = eng.score([list(range(20, 32)), list(range(30, 42)), list(range(40, 52))], TEXTS[:5], use_cache=False)
    torch.testing.assert_close(state.logprobs, want, atol=TOL, rtol=0)
    # repeated score() calls on the same examples reuse one assembled batch
    a = eng.score(PROMPTS, TEXTS[:5])
    b = eng.score(PROMPTS[::-1], TEXTS[:5])
    torch.testing.assert_close(a.flip(0), b, atol=TOL, rtol=0)


def soft_prefix_reference(lm, eng: ScoringEngine, soft: torch.Tensor, text: str) -> torch.Tensor:  # noqa: ANN001
    """Class log-probs of one soft prefix on one example, every verbalizer token read from one
    plain forward of [soft][input, template, verbalizer tokens]."""
    table = lm.input_embeddings()
    context = eng.template_tokens.full_sequence([], text)
    out = []
    for ids in eng.verbalizer_ids:
        seq = torch.cat([soft, table(torch.tensor([context + ids[:-1]], device=lm.device))[0]])[None]
        logp = torch.log_softmax(lm.model(inputs_embeds=seq).logits[0].float(), -1)
        start = soft.shape[0] + len(context) - 1
        out.append(sum(logp[start + j, t] for j, t in enumerate(ids)))
    return torch.stack(out)


@pytest.mark.parametrize("template", ["{sentence} {prompt}", "{sentence} {prompt} all in all it was"])
def test_soft_prefix_scores_multi_token_verbalizers(tiny_lm, template):
    eng = ScoringEngine(tiny_lm, [" terrible film", " great", " not bad at all"], template=template)
    assert [len(v) for v in eng.verbalizer_ids][0] > 1 and len(eng.verbalizer_ids[2]) > 2
    torch.manual_seed(0)
    soft = torch.randn(2, 3, tiny_lm.model.config.hidden_size, device=tiny_lm.device) * 0.5
    texts = TEXTS[:5]
    out = eng.score_soft(soft, texts, placement="prefix")
    assert out.shape == (2, len(texts), 3)
    with torch.no_grad():
        for p in range(2):
            for e, text in enumerate(texts):
                torch.testing.assert_close(out[p, e], soft_prefix_reference(tiny_lm, eng, soft[p], text),
                                           atol=TOL, rtol=0)
    # with the graph kept, the later tokens' log-probs carry gradients too
    soft = soft.clone().requires_grad_(True)
    eng.score_soft(soft, texts, placement="prefix", grad=True)[:, :, 0].sum().backward()
    assert soft.grad is not None and float(soft.grad.abs().sum()) > 0


@pytest.mark.parametrize("mask", ["bool", "float", "causal", "padded-causal"])
def test_small_attention_equals_sdpa(mask):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from rlprompt.lm.transformers_compat import small_attention

    class Module(torch.nn.Module):
        num_key_value_groups, is_causal = 3, True

    torch.manual_seed(0)
    batch, q_len, k_len = 4, 5, 9
    query = torch.randn(batch, 6, q_len, 8)
    key, value = torch.randn(batch, 2, k_len, 8), torch.randn(batch, 2, k_len, 8)
    allowed = torch.rand(batch, 1, q_len, k_len) > 0.3
    allowed[..., -1] = True
    if mask == "bool":
        attention_mask = allowed
    elif mask == "float":
        attention_mask = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
    elif mask == "causal":
        attention_mask = None
    else:  # left padding: a fully masked query row (its output is never read) must stay finite
        attention_mask = torch.ones(batch, 1, q_len, k_len, dtype=torch.bool).tril(k_len - q_len)
        attention_mask[0, :, :, :6] = False
    got, _ = small_attention(Module(), query, key, value, attention_mask, scaling=0.3)
    want, _ = sdpa_attention_forward(Module(), query, key, value, attention_mask, scaling=0.3)
    assert got.shape == want.shape == (batch, q_len, 6, 8) and bool(torch.isfinite(got).all())
    rows = slice(None) if mask != "padded-causal" else slice(1, None)
    torch.testing.assert_close(got[rows], want[rows], atol=1e-5, rtol=0)


def test_the_engine_uses_small_attention_for_its_forwards_only(tiny_lm):
    from rlprompt.lm.transformers_compat import SMALL_ATTENTION

    if tiny_lm.device.type != "cpu":
        pytest.skip("the small-attention kernel is the engine's CPU path")
    cfg = tiny_lm.model.config
    eng = ScoringEngine(tiny_lm, [" terrible film", " great"])
    seen = []
    hook = tiny_lm.model.model.layers[0].self_attn.register_forward_pre_hook(
        lambda module, args: seen.append(module.config._attn_implementation))
    try:
        cached = eng.score(PROMPTS, TEXTS[:6])
    finally:
        hook.remove()
    assert seen and set(seen) == {SMALL_ATTENTION} and cfg._attn_implementation == "sdpa"
    eng._forward.device_type = "off"  # the fused kernel everywhere: the same scores
    plain = ScoringEngine(tiny_lm, [" terrible film", " great"])
    plain._forward.device_type = "off"
    torch.testing.assert_close(cached, plain.score(PROMPTS, TEXTS[:6]), atol=TOL, rtol=0)
    torch.testing.assert_close(cached, plain.score(PROMPTS, TEXTS[:6], use_cache=False), atol=TOL, rtol=0)


@pytest.mark.integration
def test_smollm2_float32_fast_paths_equal_full(fsc16):
    """On the real model in float32: per-example caches in length buckets, subsets, and
    incremental prompts equal the full sequences."""
    from rlprompt.lm import load_lm
    from rlprompt.tasks import load_fewshot

    lm = load_lm("smollm2-135m", dtype="float32")
    task = load_fewshot(fsc16, "sst-2", 42)
    texts = task.texts("train")
    eng = ScoringEngine(lm, task.verbalizers, max_batch_tokens=512)  # several length buckets
    prompts = [" It was", "", " All in all, the movie is", " Overall"]
    torch.testing.assert_close(eng.score(prompts, texts), eng.score(prompts, texts, use_cache=False), atol=1e-3, rtol=0)
    subset = texts[20:] + texts[:3]
    before = eng.counters.copy()
    got = eng.score(prompts, subset)
    assert (eng.counters - before).forward_tokens == prompt_tokens(eng, prompts) * len(subset)
    torch.testing.assert_close(got, eng.score(prompts, subset, use_cache=False), atol=1e-3, rtol=0)
    ids = eng.prompt_tokens(" All in all, the movie is")
    state = eng.start(1, subset)
    for t in ids:
        got = state.extend([t])
    torch.testing.assert_close(got, eng.score([ids], subset, use_cache=False), atol=1e-3, rtol=0)


def test_input_cache_store_is_a_bounded_segmented_lru():
    from rlprompt.lm.input_cache import InputCacheStore, InputEntry

    def entry(n: int = 4) -> InputEntry:
        return InputEntry(torch.zeros(1, 1, n, 2), torch.zeros(1, 1, n, 2), torch.zeros(2), None)

    store = InputCacheStore(max_entries=4)
    for t in "abcd":
        store.put(t, entry())
    assert store.get("a") is not None and store.protected == 1  # a second use protects
    for t in "efghij":  # a one-off pass: cycles through the probation segment only
        store.put(t, entry())
    assert len(store) == 4 and "a" in store and "b" not in store
    assert store.get("zzz") is None
    # the protected segment holds at most 3/4 of the bound: the oldest protected is demoted
    for t in "ghij":
        store.get(t)
    assert store.protected == 3 and len(store) == 4
    nbytes = entry().nbytes
    small = InputCacheStore(max_entries=100, max_bytes=3 * nbytes)
    for t in "abcdef":
        small.put(t, entry())
    assert len(small) == 3 and small.nbytes == 3 * nbytes and "f" in small
    small.clear()
    assert len(small) == 0 and small.nbytes == 0
