"""Tests for the sequence model: incremental step == full forward, step purity, determinism, heads."""

from __future__ import annotations

import itertools

import pytest
import torch

from behavior_stream.nn.features import encode_events, encode_sequences
from behavior_stream.nn.network import SequenceModel
from behavior_stream.nn.state import ModelState
from behavior_stream.schema.events import Event
from behavior_stream.schema.vocab import ItemVocab
from tests.seqkit import sequences, small_model, tiny_vocab

CELLS = [("gru", 1), ("gru", 2), ("lstm", 1), ("lstm", 2)]
TOL = 1e-5


def snapshot(state: ModelState) -> list[torch.Tensor]:
    return [
        t.clone()
        for t in (state.h, state.c, state.last_ts, state.history, state.history_types)
        if t is not None
    ]


def step_all(
    model: SequenceModel, vocab: ItemVocab, seqs: list[list[Event]]
) -> tuple[ModelState, list[list[ModelState]]]:
    """Step every user through its events, a round at a time: round t advances, as one batch, the
    users that have a t-th event (rows picked with `select`, put back with `cat`). Returns the final
    states and each user's state after each of its events."""
    n = len(seqs)
    state = model.initial_state(n)
    after: list[list[ModelState]] = [[] for _ in seqs]
    for t in range(max(map(len, seqs))):
        active = [i for i, s in enumerate(seqs) if t < len(s)]
        idle = [i for i in range(n) if i not in active]
        before = state.select(torch.tensor(active))
        frozen = snapshot(before)
        with torch.inference_mode():
            new = model.step(before, encode_events([seqs[i][t] for i in active], vocab, model.config))
        assert all(torch.equal(a, b) for a, b in zip(frozen, snapshot(before), strict=True)), (
            "step mutated its input"
        )
        for row, i in enumerate(active):
            after[i].append(new.select(torch.tensor([row])))
        merged = ModelState.cat([new, state.select(torch.tensor(idle, dtype=torch.int64))])
        state = merged.select(torch.argsort(torch.tensor(active + idle)))
    return state, after


def check_step_matches_forward(model: SequenceModel, vocab: ItemVocab, seqs: list[list[Event]]) -> None:
    """The shared contract check: hidden states, scores, purchase probabilities and the final
    state from stepping equal the full forward's."""
    with torch.no_grad():
        out = model(encode_sequences(seqs, vocab, model.config), return_state=True)
    final, after = step_all(model, vocab, seqs)
    with torch.no_grad():
        for i, states in enumerate(after):
            for t, st in enumerate(states):
                h = out.hidden[i, t][None]
                hist, types = out.history[i, t][None], out.history_types[i, t][None]
                assert (model.representation(st) - h).abs().max() <= TOL
                assert torch.equal(st.history, hist) and torch.equal(st.history_types, types)
                expected = model.score_hidden(h, hist, types)
                assert (model.scores(st) - expected).abs().max() <= TOL
                assert (
                    model.purchase_probability(st) - torch.sigmoid(model.purchase_logit(h))
                ).abs().max() <= TOL
    assert out.state is not None
    assert (final.h - out.state.h).abs().max() <= TOL
    if model.config.cell == "lstm":
        assert final.c is not None and out.state.c is not None
        assert (final.c - out.state.c).abs().max() <= TOL
    else:
        assert final.c is None and out.state.c is None
    assert torch.equal(final.last_ts, out.state.last_ts)
    assert torch.equal(final.history, out.state.history)


@pytest.mark.parametrize(("cell", "layers"), CELLS)
def test_step_matches_forward(cell: str, layers: int) -> None:
    vocab = tiny_vocab()
    seqs = sequences()
    flat = [e for s in seqs for e in s]
    # The fixture must exercise what the contract promises: searches, OOV items, session gaps.
    assert any(e.query for e in flat)
    assert any(e.item_id and vocab.index(e.item_id) is None for e in flat)
    assert any(b.ts - a.ts > 30 * 60_000 for s in seqs for a, b in itertools.pairwise(s))
    check_step_matches_forward(small_model(vocab, cell=cell, num_layers=layers), vocab, seqs)


@pytest.mark.parametrize(("cell", "layers"), CELLS)
def test_same_seed_same_result(cell: str, layers: int) -> None:
    vocab = tiny_vocab()
    seqs = sequences((6, 3))
    runs = [
        step_all(small_model(vocab, seed=s, cell=cell, num_layers=layers), vocab, seqs)[0] for s in (3, 3, 4)
    ]
    assert torch.equal(runs[0].h, runs[1].h)
    assert not torch.allclose(runs[0].h, runs[2].h)


def test_forward_from_a_state_continues_the_sequence() -> None:
    """Splitting a sequence and running the second half from the first half's state changes nothing."""
    vocab = tiny_vocab()
    model = small_model(vocab, cell="lstm", num_layers=2)
    (seq,) = sequences((12,))
    with torch.no_grad():
        whole = model(encode_sequences([seq], vocab, model.config))
        first = model(encode_sequences([seq[:5]], vocab, model.config), return_state=True)
        rest = model(encode_sequences([seq[5:]], vocab, model.config), first.state)
    assert (whole.hidden[:, 5:] - rest.hidden).abs().max() <= TOL
    assert torch.equal(whole.history[:, 5:], rest.history)


def test_heads_shapes_and_ranges() -> None:
    vocab = tiny_vocab()
    model = small_model(vocab)
    state, _ = step_all(model, vocab, sequences())
    with torch.no_grad():
        assert model.scores(state).shape == (4, vocab.n_items)
        probs = model.purchase_probability(state)
        assert probs.shape == (4,) and bool(((probs > 0) & (probs < 1)).all())
        assert model.representation(state).shape == (4, model.config.hidden_size)
    assert state.history.shape == (4, model.config.repeat_window)


def test_model_rejects_inconsistent_sizes() -> None:
    with pytest.raises(ValueError, match="n_inputs"):
        SequenceModel(small_model(tiny_vocab()).config, n_items=10, n_inputs=10)


@pytest.mark.parametrize(("cell", "layers"), CELLS)
def test_the_fused_cell_step_equals_the_recurrent_module(cell: str, layers: int) -> None:
    """`step` (eval) runs `torch.gru_cell` / `lstm_cell` on the module's weights: GRU bit for bit
    what the module returns for a one-step sequence, LSTM within float rounding."""
    model = small_model(tiny_vocab(), cell=cell, num_layers=layers)
    gen = torch.Generator().manual_seed(0)
    n, in_dim = 5, model.rnn.input_size
    state = model.initial_state(n)
    state = ModelState(
        h=torch.randn(state.h.shape, generator=gen),
        c=None if state.c is None else torch.randn(state.c.shape, generator=gen),
        last_ts=state.last_ts,
        last_session=state.last_session,
        history=state.history,
        history_types=state.history_types,
    )
    x = torch.randn(n, in_dim, generator=gen)
    with torch.inference_mode():
        _, h_cell, c_cell = model._cell_step(x, state)
        _, h_mod, c_mod = model._run(x[:, None], state)
    if cell == "gru":
        assert torch.equal(h_cell, h_mod) and c_cell is None and c_mod is None
    else:
        assert c_cell is not None and c_mod is not None
        assert (h_cell - h_mod).abs().max() <= 1e-6 and (c_cell - c_mod).abs().max() <= 1e-6
    assert h_mod.abs().max() > 0.01  # a real state, not zeros
