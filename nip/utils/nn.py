"""Small generic network layers written for speed on CPU with short sequences and small widths.

The agents in this project run on small tensors (tens of tokens, widths of 16-64) where
PyTorch's generic transformer kernels are slow and where, on CPU, each elementwise pass over
an activation and each transcendental function (``tanh`` in particular) is a visible share of
the step time. These layers keep both counts low.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nip.config.choices import Activation


class _SigmoidTanh(torch.autograd.Function):
    """``tanh(x) = 2 * sigmoid(2x) - 1``, with the usual ``1 - y^2`` backward."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: D102
        y = torch.sigmoid(x * 2.0).mul_(2.0).sub_(1.0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def fast_tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent computed through ``sigmoid``.

    On the CPUs this project trains on, ``torch.tanh`` costs about three times as much as
    ``torch.sigmoid``. The result differs from ``torch.tanh`` by at most ~2e-7 (absolute).
    """
    if torch.compiler.is_compiling():
        return torch.tanh(x)  # the compiler generates its own fused code
    return _SigmoidTanh.apply(x)


class FastTanh(nn.Module):
    """Module form of :func:`fast_tanh`."""

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return fast_tanh(x)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    Activation.tanh: FastTanh,
    Activation.relu: nn.ReLU,
    Activation.sigmoid: nn.Sigmoid,
}

# Additive attention bias for forbidden keys. Finite so that sums of several biases and
# softmax over them stay well defined; exp(-1e9 - max) underflows to exactly 0.
NEG_INF = -1e9
# Logit given to actions an agent may not take (finite, so log-softmax stays finite).
MASKED_LOGIT = -1e9


def activation_module(name: str) -> nn.Module:
    """A fresh activation module by name (``tanh``, ``relu`` or ``sigmoid``)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}"
        ) from None


class MLP(nn.Module):
    """``Linear(d_in, h) - act - [Linear(h, h) - act] * (num_layers - 2) - Linear(h, d_out)``.

    ``num_layers <= 2`` both give two linear layers (the original code's convention).

    With ``tanh`` the forward pass evaluates each hidden layer as ``s = sigmoid(2 z)`` and
    folds the affine map ``tanh(z) = 2 s - 1`` into the following linear layer's weights
    (``W tanh(z) + b = (2W) s + (b - W 1)``). That is the same function up to float rounding
    (~1e-7), with one sigmoid per element and no extra elementwise passes, instead of a tanh
    that costs about three times as much on CPU. Parameters are ordinary ``nn.Linear`` s.

    Parameters
    ----------
    d_in, d_hidden, d_out : int
        Widths.
    num_layers : int
        Number of linear layers (at least 2 are used).
    activation : str
        ``tanh``, ``relu`` or ``sigmoid``.
    """

    def __init__(self, d_in: int, d_hidden: int, d_out: int, num_layers: int, activation: str):
        super().__init__()
        dims = [d_in] + [d_hidden] * (max(num_layers, 2) - 1) + [d_out]
        self.linears = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        # A plain string: what torch.compile traces compares it as one.
        self.activation = str(activation)
        self.act = activation_module(activation)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` float ``[..., d_in]`` -> ``[..., d_out]``."""
        if self.activation == "tanh" and not torch.compiler.is_compiling():
            return self._forward_tanh(x)
        for lin in self.linears[:-1]:
            x = self.act(lin(x))
        return self.linears[-1](x)

    def _forward_tanh(self, x: Tensor) -> Tensor:
        # s_i = sigmoid(2 z_i), so the i-th hidden activation is tanh(z_i) = 2 s_i - 1.
        # (Out of place: an in-place sigmoid on F.linear's reshaped output makes autograd
        # copy the whole buffer in backward.)
        first = self.linears[0]
        s = torch.sigmoid(F.linear(x, first.weight * 2.0, first.bias * 2.0))
        for lin in self.linears[1:-1]:
            w = lin.weight
            s = torch.sigmoid(F.linear(s, w * 4.0, (lin.bias - w.sum(1)) * 2.0))
        last = self.linears[-1]
        return F.linear(s, last.weight * 2.0, last.bias - last.weight.sum(1))


def mlp(d_in: int, d_hidden: int, d_out: int, num_layers: int, activation: str) -> MLP:
    """Shorthand for :class:`MLP`."""
    return MLP(d_in, d_hidden, d_out, num_layers, activation)


def orthogonal_init_(module: nn.Module, gain: float = 1.0) -> None:
    """Orthogonally initialise every ``nn.Linear`` and ``nn.Conv2d`` in ``module`` (zero
    bias), in place (a convolution's kernel as a matrix of output channels by inputs).

    Submodules that fuse several projections into one weight (``SelfAttention``) initialise
    each block as its own orthogonal matrix afterwards.
    """
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            nn.init.orthogonal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, SelfAttention):
            m.orthogonal_init_(gain)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection and an additive bias mask.

    Parameters
    ----------
    d_model : int
        Token width; must be divisible by ``num_heads``.
    num_heads : int
        Number of attention heads.
    """

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"d_model ({d_model}) is not divisible by num_heads ({num_heads})")
        self.d_model = d_model
        self.num_heads = num_heads
        self.scale = 1.0 / math.sqrt(d_model // num_heads)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def orthogonal_init_(self, gain: float = 1.0) -> None:
        """Initialise q, k and v each as an orthogonal ``[d, d]`` matrix (as if separate)."""
        with torch.no_grad():
            for block in self.qkv.weight.split(self.d_model, dim=0):
                nn.init.orthogonal_(block, gain=gain)

    def forward(self, x: Tensor, bias: Tensor, num_queries: int | None = None) -> Tensor:
        """Attend.

        Parameters
        ----------
        x : Tensor
            float ``[B, L, d_model]``.
        bias : Tensor
            float, broadcastable to ``[B, heads, L, L]`` (query, key): added to the scores;
            ``NEG_INF`` forbids a key.
        num_queries : int, optional
            Only compute the outputs of the first ``num_queries`` tokens (which still attend
            to all ``L`` tokens); all of them by default.

        Returns
        -------
        Tensor
            float ``[B, Lq, d_model]``, ``Lq = num_queries or L``.
        """
        b, length, d = x.shape
        h = self.num_heads
        if num_queries is None:
            nq = length
            qkv = self.qkv(x).view(b, length, 3, h, -1).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)  # each [B, H, L, dh]
        else:
            nq = num_queries
            w, wb = self.qkv.weight, self.qkv.bias
            q = F.linear(x[:, :nq], w[:d], wb[:d]).view(b, nq, h, -1).transpose(1, 2)
            kv = F.linear(x, w[d:], wb[d:]).view(b, length, 2, h, -1).permute(2, 0, 3, 1, 4)
            k, v = kv.unbind(0)
            bias = bias[..., :nq, :]
        scores = torch.matmul(q * self.scale, k.transpose(-1, -2)) + bias
        out = torch.matmul(scores.softmax(-1), v)  # [B, H, Lq, dh]
        return self.out(out.transpose(1, 2).reshape(b, nq, d))


class TransformerEncoderLayer(nn.Module):
    """Post-norm transformer encoder layer (ReLU feed-forward, no dropout).

    Same computation as ``nn.TransformerEncoderLayer(norm_first=False, dropout=0)``:
    ``x = LN(x + SA(x)); x = LN(x + FF(x))``.

    Parameters
    ----------
    d_model : int
        Token width.
    num_heads : int
        Attention heads.
    d_feedforward : int
        Hidden width of the feed-forward block.
    """

    def __init__(self, d_model: int, num_heads: int, d_feedforward: int):
        super().__init__()
        self.attn = SelfAttention(d_model, num_heads)
        self.norm1 = nn.LayerNorm(d_model)
        self.ff1 = nn.Linear(d_model, d_feedforward)
        self.ff2 = nn.Linear(d_feedforward, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, bias: Tensor, num_queries: int | None = None) -> Tensor:
        """``x`` float ``[B, L, d]``, ``bias`` and ``num_queries`` as in :class:`SelfAttention`.

        Returns float ``[B, Lq, d]``: the outputs of the first ``Lq = num_queries or L`` tokens.
        """
        attended = self.attn(x, bias, num_queries)
        if num_queries is not None:
            x = x[:, :num_queries]
        x = self.norm1(x + attended)
        return self.norm2(x + self.ff2(F.relu(self.ff1(x))))
