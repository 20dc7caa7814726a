"""Migration traps injected on the CPU: an op that misbehaves the way a device kernel might,
active inside one module only, through the same API so that names and call order match a clean
run (docs/harness.md, "Injecting faults").

Each trap is a stand-in for a torch API:

- `rmsnorm_fp16_stats`, `layernorm_fp16_stats`, `batchnorm_fp16_stats`: the norm's statistics
  computed in the input's dtype (fp16), adding one element at a time;
- `rmsnorm_eps`, `layernorm_eps`, `batchnorm_eps`: the kernel uses another `eps` than the one
  passed (1e-2, 1e-2, 1e-3);
- `softmax_no_max_fp16`: exp(x) / sum(exp(x)) without subtracting the row max;
- `mixer_linear_fp16_acc`, `conv_fp16_acc`: linear / conv2d accumulating in fp16;
- `silu_hard_sigmoid`, `gelu_tanh_fp32`, `tanh_fast`: fast-math activations;
- `dropout_training`: dropout left in training mode;
- `v_proj_transposed`, `conv_channels_last`: an output written in another layout.

CPU torch accumulates fp16 sums in fp32 internally, so a real "accumulates in fp16" trap adds
one term at a time (`sequential_sum`).
"""

import types


def sequential_sum(t, dim):
    """Sum along `dim` in the tensor's dtype, rounding after every add (CPU torch would
    accumulate fp16 sums in fp32)."""
    import torch

    t = t.movedim(dim, -1)
    acc = torch.zeros(t.shape[:-1], dtype=t.dtype)
    for i in range(t.shape[-1]):
        acc = acc + t[..., i]
    return acc


def trap(name, orig):
    """The misbehaving implementation of trap `name` standing in for the API `orig`."""
    import torch
    import torch.nn.functional as F

    if name == "rmsnorm_fp16_stats":
        def f(x, normalized_shape, weight=None, eps=None):
            ms = sequential_sum(x * x, -1).unsqueeze(-1) / x.shape[-1]
            return x * torch.rsqrt(ms + (eps or 1e-6)) * weight
    elif name == "softmax_no_max_fp16":
        def f(x, dim=None, _stacklevel=3, dtype=None):
            e = torch.exp(x)
            return e / e.sum(dim=dim, keepdim=True)
    elif name == "silu_hard_sigmoid":
        def f(x, inplace=False):
            return x * F.hardsigmoid(x)
    elif name == "rmsnorm_eps":
        def f(x, normalized_shape, weight=None, eps=None):
            return orig(x, normalized_shape, weight, 1e-2)
    elif name == "mixer_linear_fp16_acc":
        def f(x, weight, bias=None):
            prods = x.unsqueeze(-2) * weight  # [..., out, in], each product rounded to fp16
            y = sequential_sum(prods, -1)
            return y if bias is None else y + bias
    elif name == "layernorm_fp16_stats":
        def f(x, normalized_shape, weight=None, bias=None, eps=1e-5):
            n = x.shape[-1]
            mean = (sequential_sum(x, -1) / n).unsqueeze(-1)
            var = (sequential_sum(x * x, -1) / n).unsqueeze(-1) - mean * mean
            return (x - mean) * torch.rsqrt(var + eps) * weight + bias
    elif name == "layernorm_eps":
        def f(x, normalized_shape, weight=None, bias=None, eps=1e-5):
            return orig(x, normalized_shape, weight, bias, 1e-2)
    elif name == "gelu_tanh_fp32":
        def f(x, approximate="none"):
            return orig(x, approximate="tanh")
    elif name == "dropout_training":
        def f(x, p=0.5, training=True, inplace=False):
            return orig(x, p, True, inplace)
    elif name == "v_proj_transposed":
        def f(x, weight, bias=None):
            y = orig(x, weight, bias)
            return y.transpose(-1, -2).contiguous().view(y.shape)
    elif name == "batchnorm_fp16_stats":
        def f(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
            scale = weight / torch.sqrt(running_var + eps)
            shift = bias - running_mean * scale
            return x * scale[:, None, None] + shift[:, None, None]
    elif name == "batchnorm_eps":
        def f(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
            return orig(x, running_mean, running_var, weight, bias, training, momentum, 1e-3)
    elif name == "conv_fp16_acc":
        def f(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
            N, _, Hh, Ww = x.shape
            O, Ci, kh, kw = weight.shape
            cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)  # [N, Ci*kh*kw, L]
            prods = cols.unsqueeze(1) * weight.reshape(O, -1)[None, :, :, None]  # [N, O, K, L]
            y = sequential_sum(prods, 2)
            if bias is not None:
                y = y + bias[None, :, None]
            s = stride if isinstance(stride, int) else stride[0]
            p = padding if isinstance(padding, int) else padding[0]
            ho = (Hh + 2 * p - kh) // s + 1
            wo = (Ww + 2 * p - kw) // s + 1
            return y.view(N, O, ho, wo)
    elif name == "conv_channels_last":
        def f(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
            y = orig(x, weight, bias, stride, padding, dilation, groups)
            return y.permute(0, 2, 3, 1).contiguous().view(y.shape)
    elif name == "tanh_fast":
        def f(x, *, out=None):
            x2 = x * x
            return torch.clamp(x * (27.0 + x2) / (27.0 + 9.0 * x2), -1.0, 1.0)
    else:
        raise ValueError(name)
    return f


class State:
    active = False
    calls = 0
    first_fault_call = None


def inject(model, module, api_module, api, name):
    """Replaces `api_module.api` (``"torch.nn.functional"`` or ``"torch"``) by a dispatcher that
    runs trap `name` only inside `model`'s submodule `module` and the original everywhere else.

    The dispatcher keeps the API's name and call order: msprobe wraps it (when installed before
    the debugger starts) and does not record what it calls inside; the harness's
    TorchFunctionMode sees it as the same op through handle_torch_function (resolve_name falls
    back on __module__/__qualname__). Returns msprobe's prefix, the API name and its module.
    `State.first_fault_call` is the index of the first call the trap answered.
    """
    import torch
    import torch.nn.functional as F
    from torch.overrides import handle_torch_function, has_torch_function

    owner = {"torch.nn.functional": F, "torch": torch}[api_module]
    attr = api
    orig = getattr(owner, attr)
    bad = trap(name, orig)

    def dispatcher(*args, **kwargs):
        tensors = tuple(a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor))
        if has_torch_function(tensors):
            if isinstance(orig, types.FunctionType):
                # A Python functional dispatches through its module-global name (now this
                # dispatcher) with its own argument convention: keep that convention.
                return orig(*args, **kwargs)
            return handle_torch_function(dispatcher, tensors, *args, **kwargs)
        index = State.calls
        State.calls += 1
        if not State.active:
            return orig(*args, **kwargs)
        if State.first_fault_call is None:
            State.first_fault_call = index
        return bad(*args, **kwargs)

    dispatcher.__name__ = attr
    dispatcher.__qualname__ = attr
    dispatcher.__module__ = "torch.nn.functional" if owner is F else "torch"
    setattr(owner, attr, dispatcher)

    mod = model.get_submodule(module)
    fwd = mod.forward

    def forward(*a, **k):
        State.active = True
        try:
            return fwd(*a, **k)
        finally:
            State.active = False

    mod.forward = forward
    return ("Functional" if owner is F else "Torch"), attr, api_module


def traps():
    """Names of every trap `trap` knows."""
    return (
        "rmsnorm_fp16_stats", "softmax_no_max_fp16", "silu_hard_sigmoid", "rmsnorm_eps",
        "mixer_linear_fp16_acc", "layernorm_fp16_stats", "layernorm_eps", "gelu_tanh_fp32",
        "dropout_training", "v_proj_transposed", "batchnorm_fp16_stats", "batchnorm_eps",
        "conv_fp16_acc", "conv_channels_last", "tanh_fast",
    )
