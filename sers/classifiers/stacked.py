"""Many heads of one architecture trained as one stacked model: a sweep's seeds, λ and ablations at once.

The members of a stack share their layers, branches and training settings (lam and anchors-only
with the same anchors; every seed of last); they differ in seed, λ and whether they align. Each
parameter of :class:`~sers.classifiers.heads.LayerHead` is stacked on a leading member axis, and
one forward/backward per step serves every member with batched matmuls: the members' losses are
summed, and since their parameters are disjoint each member's gradient is its own. Adam steps each
member's views of the stacked tensors, as ``fit``'s Adam steps that member's parameters.

Each member keeps what :func:`~sers.classifiers.training.train_head` gives a run of its own:

- its initial weights: built by the same ``torch.manual_seed(seed)`` and ``LayerHead`` call as
  ``fit``, then stacked;
- its row order and target rows: its own ``torch.Generator().manual_seed(seed)``;
- its dropout masks: ``fit`` draws them from torch's global generator, whose state after the head's
  initialisation is copied into a member generator here; each mask is drawn as CPU ``F.dropout``
  draws it (``empty_like(x).bernoulli_(1 - p).div_(1 - p)``, then ``x * mask``), first Dropout then
  second, every step (the target side and the dev evaluation draw none);
- its early stopping on its own dev UAR: a member that stops leaves the stack (its best state is kept,
  and the others no longer compute it).

On CPU the results equal ``fit``'s within float rounding (tests/test_stacked.py holds the two side
by side). On a GPU ``fit`` draws its masks from the device generator, which cannot be copied here:
the stacked path draws them on the CPU instead, deterministic for a seed but not those of ``fit``.

Scope: pooled features, ``align="utterance"``, no alignment or CORAL, branches of one layer or
"concat" groups, no ``speakers=``. :func:`why_not_stacked` says why any other estimator is left to
``fit``.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch.nn import functional as F

from sers.analysis.metrics import uar
from sers.classifiers import data
from sers.classifiers.losses import coral_loss
from sers.classifiers.training import Outcome, class_weights
from sers.errors import SersError

# Bytes of per-step tensors (inputs, activations, covariances, their gradients, parameters and Adam's
# moments) one stack may hold; a sweep with more members than fit is trained in several stacks.
STACK_MEMORY = 2 << 30


def why_not_stacked(model) -> str | None:
    """None when ``model`` (an unfitted LayerAnchoringClassifier) can train in a stack, else why not."""
    method = model._method()
    if model.features != "pooled":
        return "frame features train one run at a time"
    if model.align != "utterance":
        return "vowel-level alignment trains one run at a time"
    if method.aligned_by not in ("none", "coral"):
        return f"{method.aligned_by} alignment trains one run at a time"
    if method.branches == "all":
        return "learned layer weights train one run at a time"
    if method.branches == "groups" and model.group_weights != "concat":
        return f"group_weights={model.group_weights!r} trains one run at a time"
    return None


def architecture(model, layers) -> tuple:
    """What the members of one stack share, for ``model`` reading ``layers``: two estimators with the
    same key train in one stack."""
    branches, _ = model._branches(layers)
    return (tuple(sorted(layers)), tuple(tuple(b) for b in branches), model.hidden, model.dropout, model.epochs,
            model.batch_size, model.lr, model.weight_decay, model.patience, model.normalize, model.coral_scale,
            str(model.device))


def fit_stack(models, X, y, X_target=None, X_dev=None, y_dev=None, dev_domain="source", memory=STACK_MEMORY):
    """Fit every estimator of ``models`` (same :func:`architecture`, different seeds and λ) as ``fit``
    would with these arguments, in stacks of at most ``memory`` bytes; returns ``models``."""
    models = list(models)
    if not models:
        return models
    for model in models:
        reason = why_not_stacked(model)
        if reason:
            raise SersError(f"fit_stack: {model.method}: {reason}; call fit() on it")
    layers = sorted(data.as_layer_dict(X, "X"))
    keys = {architecture(model, layers) for model in models}
    if len(keys) > 1:
        raise SersError("fit_stack: the estimators differ in layers, branches or training settings; "
                        "stack only those of one architecture")
    prepared, stats = [], None
    for model in models:  # every check of fit; the statistics are the same for all, computed once
        prepared.append(model._prepare_fit(X, y, X_target, X_dev, y_dev, dev_domain, None, None, stats=stats))
        stats = model.stats_
    per_member = _member_bytes(models[0], prepared[0])
    size = max(1, int(memory // per_member))
    for start in range(0, len(models), size):
        _train(models[start:start + size], prepared[start:start + size], dev_domain)
    return models


def _member_bytes(model, prepared) -> int:
    """Bytes one member adds to a step: inputs, activations and covariances (x2 for their gradients),
    parameters with gradient and Adam's two moments."""
    branches, _, source, label_index, _, _, _, _ = prepared
    width = source[model.layers_[0]].shape[1]
    rows = len(label_index) // max(1, len(label_index) // model.batch_size) + 1
    slots, hidden, n_branches = len(model.layers_), model.hidden, len(branches)
    step = rows * (2 * slots * width + hidden * (4 * n_branches + 8)) + 4 * n_branches * hidden * hidden
    n_params = sum(width * len(b) * hidden + hidden for b in branches) + hidden * hidden + hidden * 16
    return 4 * (2 * step + 4 * n_params)


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch built on the CPU (features gathered, dropout masks) onto the training device: through
    pinned memory to a GPU, so that the copy overlaps the work queued before it; as it is on the CPU."""
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


class _Member:
    """One estimator in a stack: its generators, target rows, λ, early-stopping state and history."""

    def __init__(self, model, prepared, n_rows):
        self.model = model
        self.aligned = prepared[1]
        self.uses_target = model.uses_target()
        with torch.random.fork_rng(devices=[]):  # as fit: the head built right after manual_seed(seed)
            torch.manual_seed(model.seed)
            model._build(prepared[0])
            self.dropout = torch.Generator()
            self.dropout.set_state(torch.get_rng_state())  # where fit's first dropout mask starts
        self.shuffle = torch.Generator().manual_seed(model.seed)
        self.target_rows = data.Cycle(data.n_rows(prepared[4]), self.shuffle) if self.uses_target else None
        self.best_uar, self.best_state, self.since_best, self.history = -1.0, None, 0, []
        self.stopped = False

    def mask(self, shape, p) -> torch.Tensor:
        return torch.empty(shape).bernoulli_(1 - p, generator=self.dropout).div_(1 - p)


class _Stack:
    """The stacked parameters of the active members and the forward pass over all of them.

    The forward and backward passes read the stacked tensors; Adam steps each member's own views of
    them (their gradients are views of the stacked gradients), as ``fit``'s Adam steps that member's
    parameters: the same elementwise kernels on tensors of the same shapes, so the same rounding, and
    each member's tensors small enough to stay in cache (one Adam over the stacked tensors streamed
    every step's moments through memory: the sweep of docs/benchmarks/train.md took 477 s stacked
    against 442 s one run at a time that way, in one measurement on a shared machine)."""

    def __init__(self, members, first_model):
        head = first_model.module_
        self.names = [name for name, p in head.named_parameters() if p.requires_grad]
        self.branch_slots = head.branch_slots
        self.p = first_model.dropout
        self.sizes = (torch.tensor([float(len(s)) for s in self.branch_slots]) if len(self.branch_slots) > 1
                      else None)
        self.settings = dict(lr=first_model.lr, weight_decay=first_model.weight_decay)
        self.params = {name: torch.stack([dict(m.model.module_.named_parameters())[name].detach()
                                          for m in members]).requires_grad_() for name in self.names}
        self.views = self._views()
        self.optimizer = torch.optim.Adam([v for views in self.views for v in views.values()], **self.settings)

    def _views(self) -> list[dict]:
        """Per member, {name: its slice of the stacked tensor} (sharing its storage)."""
        n = len(next(iter(self.params.values())))
        return [{name: p.detach()[i] for name, p in self.params.items()} for i in range(n)]

    def step(self, loss: torch.Tensor) -> None:
        """Backward through the stack, then Adam on every member's views."""
        for p in self.params.values():
            p.grad = None
        loss.backward()
        for i, views in enumerate(self.views):
            for name, view in views.items():
                view.grad = self.params[name].grad[i]
        self.optimizer.step()

    def keep(self, positions: list[int]) -> None:
        """Only the members at ``positions`` stay: their parameters restacked, their Adam state kept."""
        index = torch.tensor(positions)
        kept_state = [{name: self.optimizer.state.get(self.views[i][name]) for name in self.names} for i in positions]
        self.params = {name: p.detach()[index].clone().requires_grad_() for name, p in self.params.items()}
        self.views = self._views()
        self.optimizer = torch.optim.Adam([v for views in self.views for v in views.values()], **self.settings)
        for views, states in zip(self.views, kept_state):
            for name, view in views.items():
                if states[name]:
                    self.optimizer.state[view] = states[name]

    def project(self, branch: int, x: torch.Tensor, index=None) -> torch.Tensor:
        """ReLU of the branch's projection; ``x`` is (members, rows, slots, D) (or (rows, slots, D), the
        same rows for every member); ``index``: only these members."""
        slots = self.branch_slots[branch]
        weight, bias = self.params[f"projections.{branch}.weight"], self.params[f"projections.{branch}.bias"]
        if index is not None:
            weight, bias = weight[index], bias[index]
        inputs = x[..., slots[0], :] if len(slots) == 1 else x[..., slots, :].flatten(-2)
        if inputs.dim() == 2:  # shared rows (the dev set): every member reads them
            return torch.relu(torch.matmul(inputs, weight.transpose(1, 2)) + bias.unsqueeze(1))
        return torch.relu(torch.baddbmm(bias.unsqueeze(1), inputs, weight.transpose(1, 2)))

    def mix(self, embeddings: list[torch.Tensor]) -> torch.Tensor:
        """As LayerHead.mix, each branch weighted by its number of layers, for (members, rows, H) embeddings."""
        if self.sizes is None:
            return embeddings[0]
        stacked = torch.stack(embeddings)
        members, rows, hidden = stacked.shape[1:]
        # the members and rows flattened into LayerHead's own (branches, rows, H) einsum
        mixed = torch.einsum("bnh,b->nh", stacked.reshape(len(embeddings), members * rows, hidden),
                             self.sizes.to(stacked.device) / self.sizes.sum())
        return mixed.reshape(members, rows, hidden)

    def classify(self, h: torch.Tensor, masks=None) -> torch.Tensor:
        """The classifier (Dropout, Linear, ReLU, Dropout, Linear) with the members' dropout ``masks``."""
        P = self.params
        if masks is not None:
            h = h * masks[0]
        h = torch.relu(torch.baddbmm(P["classifier.1.bias"].unsqueeze(1), h, P["classifier.1.weight"].transpose(1, 2)))
        if masks is not None:
            h = h * masks[1]
        return torch.baddbmm(P["classifier.4.bias"].unsqueeze(1), h, P["classifier.4.weight"].transpose(1, 2))

    def member_state(self, position: int) -> dict:
        return {name: view.clone() for name, view in self.views[position].items()}


def _train(models, prepared, dev_domain) -> None:
    """One stack: every member trained in lockstep, each stopping on its own dev UAR."""
    first = models[0]
    _, _, source, label_index, target, dev, y_dev, _ = prepared[0]
    device = torch.device(first.device)
    n_rows = len(label_index)
    n_batches = max(1, n_rows // first.batch_size)
    weights = class_weights(label_index, len(first.classes_), device)
    members = [_Member(model, prep, n_rows) for model, prep in zip(models, prepared)]
    aligned = {tuple(m.aligned) for m in members if m.uses_target}
    if len(aligned) > 1:
        raise SersError("fit_stack: the aligning members align different branches; stack them separately")
    aligned = list(aligned.pop()) if aligned else []
    stack = _Stack(members, first)
    active = list(members)
    dev_x = (torch.from_numpy(data.gather(dev, first.layers_, np.arange(data.n_rows(dev)), first.stats_[dev_domain]))
             if dev is not None else None)
    names = ("loss_ce", "loss_align", "loss_total")
    hidden = first.hidden
    for epoch in range(1, first.epochs + 1):
        started = time.perf_counter()
        sums = torch.zeros(len(active), len(names), dtype=torch.float64, device=device)
        splits = [np.array_split(torch.randperm(n_rows, generator=m.shuffle).numpy(), n_batches) for m in active]
        lambdas = torch.tensor([m.model.lambda_ if m.uses_target else 0.0 for m in active], device=device)
        aligning = [i for i, m in enumerate(active) if m.uses_target]
        aligning_index = torch.tensor(aligning, dtype=torch.long, device=device)
        for step in range(n_batches):
            rows = np.stack([split[step] for split in splits])  # (members, rows): same count for all
            x = to_device(_gather(first, source, rows, "source"), device)
            embeddings = [stack.project(b, x) for b in range(len(stack.branch_slots))]
            masks = None
            if stack.p > 0:
                shape = (rows.shape[1], hidden)
                masks = [to_device(torch.stack([m.mask(shape, stack.p) for m in active]), device) for _ in range(2)]
            logits = stack.classify(stack.mix(embeddings), masks)
            labels = to_device(torch.from_numpy(label_index[rows]), device)
            # unbind, not logits[i]: one backward node for all members instead of a zero-filled copy per member
            ce = torch.stack([F.cross_entropy(member_logits, member_labels, weight=weights)
                              for member_logits, member_labels in zip(logits.unbind(0), labels.unbind(0))])
            align = torch.zeros(len(active), device=device)
            if aligning:
                target_rows = np.stack([active[i].target_rows.take(rows.shape[1]) for i in aligning])
                t = to_device(_gather(first, target, target_rows, "target"), device)
                sources = {b: embeddings[b].unbind(0) for b in aligned}
                targets = {b: stack.project(b, t, aligning_index).unbind(0) for b in aligned}
                # as coral_alignment, member by member: covariances of one member stay in cache
                terms = torch.stack([sum(coral_loss(sources[b][i], targets[b][k], first.coral_scale)
                                         for b in aligned) for k, i in enumerate(aligning)])
                align = align.index_copy(0, aligning_index, terms)
            loss = ce + lambdas * align
            stack.step(loss.sum())
            sums += torch.stack([ce, align, loss], 1).detach().double()  # as fit's float64 sums of .item()
        means = (sums / n_batches).tolist()
        dev_uars = _dev_uars(stack, dev_x, y_dev, first, len(active)) if dev_x is not None else None
        seconds = time.perf_counter() - started
        still = []
        for position, member in enumerate(active):
            record = {"epoch": epoch, **dict(zip(names, means[position]))}
            if dev_uars is not None:
                record["dev_uar"] = dev_uars[position]
            record["seconds"] = seconds
            member.history.append(record)
            if member.model.verbose:
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
            if dev_uars is not None:
                if record["dev_uar"] > member.best_uar:
                    member.best_uar, member.since_best = record["dev_uar"], 0
                    member.best_state = stack.member_state(position)
                else:
                    member.since_best += 1
                    if member.model.patience and member.since_best >= member.model.patience:
                        member.stopped = True
            if not member.stopped:
                still.append(position)
        if not still:
            break
        if len(still) < len(active):  # the stopped members leave: nobody computes them any longer
            stack.keep(still)
            active = [active[p] for p in still]
    final = {id(m): stack.member_state(p) for p, m in enumerate(active)}
    for member in members:
        state = member.best_state if member.best_state is not None else final[id(member)]
        with torch.no_grad():
            parameters = dict(member.model.module_.named_parameters())
            for name, value in state.items():
                parameters[name].copy_(value)
        history = member.history
        if dev_x is None:
            outcome = Outcome(history, history[-1]["epoch"], None)
        else:
            outcome = Outcome(history, max(history, key=lambda r: (r["dev_uar"], -r["epoch"]))["epoch"],
                              member.best_uar)
        member.model._fitted(outcome, None if dev_x is None else dev_domain)


def _gather(model, layers_data, rows: np.ndarray, domain: str) -> torch.Tensor:
    """(members, rows, slots, D) standardised float32 batch of each member's ``rows``, gathered as fit
    gathers its batches (from the features as stored: only the batch is converted to float32)."""
    flat = data.gather(layers_data, model.layers_, rows.reshape(-1), model.stats_[domain])
    return torch.from_numpy(flat).reshape(*rows.shape, *flat.shape[1:])


def _dev_uars(stack: _Stack, dev_x: torch.Tensor, y_dev, model, n_members: int) -> list[float]:
    """Each member's UAR on the dev rows, in eval mode (no dropout), in row chunks that keep
    members x rows x hidden floats within a quarter of the stack's memory."""
    device = torch.device(model.device)
    chunk = max(1, int((STACK_MEMORY // 4) // (4 * n_members * model.hidden * 4)))
    predicted = []
    with torch.no_grad():
        for start in range(0, len(dev_x), chunk):
            x = to_device(dev_x[start:start + chunk], device)
            embeddings = [stack.project(b, x) for b in range(len(stack.branch_slots))]
            proba = torch.softmax(stack.classify(stack.mix(embeddings)), dim=2)
            predicted.append(proba.argmax(2).cpu().numpy())
    predicted = np.concatenate(predicted, axis=1)
    return [uar(y_dev, model.classes_[predicted[i]], model.classes_) for i in range(n_members)]
