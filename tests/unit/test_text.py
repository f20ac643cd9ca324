"""The tokenizer gives exactly what Keras gives, on tricky text and on random text."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from toxic_service.bundle import KERAS_FILTERS, BundleMetadata, TokenizerConfig
from toxic_service.text import encode, pad, tokenize

keras_text = pytest.importorskip("tf_keras.preprocessing.text", reason="tf-keras (the Keras 2 tokenizer) is not installed")
keras_utils = pytest.importorskip("keras.utils", reason="keras is not installed")

TRICKY = [
    "",
    "   ",
    "You IDIOT!!!",
    "thank you, for the help.",
    "don't you dare... it's 'quoted' \"text\"",
    "tabs\tand\nnewlines\r\nand\x0bvertical\x0cfeeds",
    "non\xa0breaking\u2009thin\u3000ideographic spaces",
    "Café NAÏVE résumé Straße İstanbul ΣΊΣΥΦΟΣ",
    "emoji 😀👍🏽 and zero\u200bwidth and combining e\u0301",
    "path/to/file.txt a-b_c d@e.com #tag $5 50% [x] {y} (z) <w> a|b a~b a^b `code`",
    "multiple    spaces   between",
    "CamelCaseWords and snake_case_words",
    "中文文本 没有空格",
    "a" * 5000 + " " + "b c " * 2000,
]
CONFIGS = [
    TokenizerConfig(),
    TokenizerConfig(lower=False),
    TokenizerConfig(filters=""),
    TokenizerConfig(filters="!?.,", split=" "),
    TokenizerConfig(split=","),
    TokenizerConfig(split="ab"),
]


def keras_tokenize(text: str, config: TokenizerConfig) -> list[str]:
    return keras_text.text_to_word_sequence(text, filters=config.filters, lower=config.lower, split=config.split)


def keras_pad(sequences, max_len: int) -> np.ndarray:
    return keras_utils.pad_sequences(sequences, maxlen=max_len)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"lower={c.lower},filters={len(c.filters)},split={c.split!r}")
@pytest.mark.parametrize("text", TRICKY, ids=range(len(TRICKY)))
def test_tokenize_matches_keras_on_tricky_text(text, config):
    assert tokenize(text, config) == keras_tokenize(text, config)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(list(KERAS_FILTERS + " \r\xa0")), max_size=200),
    lower=st.booleans(),
    filters=st.sampled_from([KERAS_FILTERS, "", "!.", "aeiou"]),
    split=st.sampled_from([" ", ",", "\t", "xy"]),
)
def test_tokenize_matches_keras_on_random_text(text, lower, filters, split):
    config = TokenizerConfig(lower=lower, filters=filters, split=split)
    assert tokenize(text, config) == keras_tokenize(text, config)


def test_tokenize_splits_only_on_split_and_filters_like_keras():
    # A no-break space is neither a filter nor the split: it stays inside the word, as in Keras.
    assert tokenize("a\xa0b c\td", TokenizerConfig()) == ["a\xa0b", "c", "d"]


def _meta(num_words=None, oov_index=None) -> BundleMetadata:
    return BundleMetadata(labels=("x",), max_len=5, vocabulary_checksum="sha256:0", vocabulary_size=0,
                          num_words=num_words, oov_index=oov_index)


CORPUS = ["the cat sat on the mat", "the dog ate my homework", "you are an idiot, the idiot!", "thank you for the edit"]
PROBES = ["the cat ate the idiot", "unknown words everywhere", "", "THE MAT, the mat; the homework?", "zebra the zebra"]


@pytest.mark.parametrize("num_words", [None, 0, 1, 3, 6, 1000])
@pytest.mark.parametrize("oov", [None, "<unk>"])
def test_encode_matches_keras_tokenizer_num_words_and_oov(num_words, oov):
    tokenizer = keras_text.Tokenizer(num_words=num_words, oov_token=oov)
    tokenizer.fit_on_texts(CORPUS)
    expected = tokenizer.texts_to_sequences(PROBES)
    meta = _meta(num_words=num_words, oov_index=tokenizer.word_index.get(oov) if oov else None)
    config = TokenizerConfig(lower=tokenizer.lower, filters=tokenizer.filters, split=tokenizer.split)
    got = [encode(tokenize(text, config), tokenizer.word_index, meta) for text in PROBES]
    assert got == expected


def test_encode_drops_unknown_words_without_oov_and_maps_them_with_it():
    mapping = {"you": 2, "idiot": 3}
    assert encode(["you", "absolute", "idiot"], mapping, _meta()) == [2, 3]
    assert encode(["you", "absolute", "idiot"], mapping, _meta(oov_index=1)) == [2, 1, 3]
    assert encode(["you", "absolute", "idiot"], mapping, _meta(num_words=3)) == [2]
    assert encode(["you", "absolute", "idiot"], mapping, _meta(num_words=3, oov_index=1)) == [2, 1, 1]


@pytest.mark.parametrize(
    "sequences",
    [[[1, 2, 3]], [[]], [[], [5]], [list(range(1, 30))], [[7] * 5, [1, 2], list(range(100, 140)), []], []],
    ids=["short", "empty", "empty-and-one", "long", "mixed", "no-rows"],
)
@pytest.mark.parametrize("max_len", [1, 5, 20])
def test_pad_matches_keras_pad_sequences_defaults(sequences, max_len):
    ours = pad(sequences, max_len)
    theirs = keras_pad(sequences, max_len)
    assert ours.dtype == np.int32 and theirs.dtype == np.int32
    np.testing.assert_array_equal(ours, theirs.reshape(len(sequences), max_len))


def test_pad_keeps_the_end_of_long_sequences_and_pads_the_front():
    out = pad([[1, 2, 3, 4], [9]], 3, pad_index=0)
    np.testing.assert_array_equal(out, [[2, 3, 4], [0, 0, 9]])
    assert pad([[9]], 3, pad_index=7).tolist() == [[7, 7, 9]]


def test_whole_pipeline_matches_keras_on_a_very_long_comment():
    tokenizer = keras_text.Tokenizer(num_words=8)
    tokenizer.fit_on_texts(CORPUS)
    text = " ".join(["the idiot, you!"] * 20_000)
    config = TokenizerConfig()
    ours = pad([encode(tokenize(text, config), tokenizer.word_index, _meta(num_words=8))], 100)
    np.testing.assert_array_equal(ours, keras_pad(tokenizer.texts_to_sequences([text]), 100))
