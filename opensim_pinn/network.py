"""The PI-MJCA-BiGRU network (arXiv 2511.10878) and its ablations (torch).

Kinematics (and ground reaction forces) in, muscle activations out::

    (q, qd, qdd) of joint j --per-joint linear--> joint token j   (d_model)
    GRF vector              --linear----------->  GRF token       (d_model)
    joint tokens attend to all tokens (multi-head cross-attention, residual + LayerNorm)
    flatten the joint tokens --linear + GELU--> frame feature      ("feature integration")
    bidirectional GRU over the frames of the window
    fully connected head --> logits --> sigmoid --> activations in [0, 1]

Joints, muscles and actuators are counts given at construction (they come from
the model, never from a fixed list). The muscle activations are what the physics
loss trains. A second, small head (:attr:`MJCABiGRU.actuator_head`, when the model
has reserve/residual actuators) outputs their controls, so that a prediction
holds every column of Static Optimization's files without inverse dynamics.
Their exact values for given activations are the least-cost cover of the
generalised forces the muscles leave (:meth:`opensim_pinn.loss.PhysicsLoss.controls`,
which needs inverse dynamics); the head learns that map on the training frames
from the same trunk features, detached: it never changes the activations.

Ablations, chosen by :attr:`NetworkConfig.architecture`:

- ``"mjca"``: the paper's network (default);
- ``"bigru"``: no attention: the per-frame features go straight to feature integration;
- ``"cnn"``: a 1-D convolution over time replaces the joint tokens and attention;
- ``"mlp"``: a per-frame baseline: no attention and no GRU; a hidden layer of the
  same width as the BiGRU's output takes its place, so each frame's activations
  depend on that frame's features only.

Input features per frame are laid out as :func:`feature_layout` says:
``q`` (n_coordinates), ``qd`` (n_coordinates), ``qdd`` (n_coordinates), then GRF (n_grf).

Examples
--------
>>> network = build_network(NetworkConfig(), n_coordinates=3, n_grf=6, n_muscles=9)
>>> network(torch.zeros(2, 50, 3 * 3 + 6)).shape
torch.Size([2, 50, 9])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

ARCHITECTURES = ("mjca", "bigru", "cnn", "mlp")
"""Names of the network variants."""


@dataclass
class NetworkConfig:
    """Architecture and sizes of the network.

    Attributes
    ----------
    architecture : str
        One of :data:`ARCHITECTURES`.
    d_model : int
        Width of each joint token.
    heads : int
        Attention heads (must divide ``d_model``).
    gru_hidden : int
        Hidden units of the GRU per direction.
    gru_layers : int
        Stacked GRU layers.
    dropout : float
        Dropout after feature integration and between GRU layers.
    cnn_kernel : int
        Frames spanned by the ``"cnn"`` variant's convolutions (odd).
    """

    architecture: str = "mjca"
    d_model: int = 32
    heads: int = 4
    gru_hidden: int = 64
    gru_layers: int = 1
    dropout: float = 0.0
    cnn_kernel: int = 5

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture {self.architecture!r}: choose one of {', '.join(ARCHITECTURES)}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model={self.d_model} is not a multiple of heads={self.heads}")
        if self.cnn_kernel % 2 == 0:
            raise ValueError(f"cnn_kernel={self.cnn_kernel} must be odd")

    def to_dict(self) -> dict:
        return asdict(self)


def feature_layout(n_coordinates: int, n_grf: int) -> dict[str, slice]:
    """Where ``q``, ``qd``, ``qdd`` and ``grf`` sit in a frame's feature vector."""
    c = n_coordinates
    return {"q": slice(0, c), "qd": slice(c, 2 * c), "qdd": slice(2 * c, 3 * c),
            "grf": slice(3 * c, 3 * c + n_grf)}


class JointProjection(nn.Module):
    """Each joint's (q, qd, qdd) to a ``d_model`` token with its own weights.

    Input (..., 3 * n_coordinates) laid out as :func:`feature_layout`; output
    (..., n_coordinates, d_model).
    """

    def __init__(self, n_coordinates: int, d_model: int):
        super().__init__()
        self.n_coordinates = n_coordinates
        self.weight = nn.Parameter(torch.randn(n_coordinates, 3, d_model) / 3 ** 0.5)
        self.bias = nn.Parameter(torch.zeros(n_coordinates, d_model))

    def forward(self, kinematics: torch.Tensor) -> torch.Tensor:
        per_joint = kinematics.unflatten(-1, (3, self.n_coordinates)).transpose(-1, -2)  # (..., C, 3)
        return torch.einsum("...ck,ckd->...cd", per_joint, self.weight) + self.bias


class MultiJointCrossAttention(nn.Module):
    """Joint tokens attend to all tokens (joints and GRF): multi-head, residual, LayerNorm.

    Input (..., n_coordinates * 3 + n_grf) features; output (..., n_coordinates, d_model).
    """

    def __init__(self, n_coordinates: int, n_grf: int, d_model: int, heads: int):
        super().__init__()
        self.n_coordinates = n_coordinates
        self.joints = JointProjection(n_coordinates, d_model)
        self.grf = nn.Linear(n_grf, d_model) if n_grf else None
        self.attention = nn.MultiheadAttention(d_model, heads, batch_first=True)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        lead = features.shape[:-1]
        flat = features.reshape(-1, features.shape[-1])
        queries = self.joints(flat[:, :3 * self.n_coordinates])  # (N, C, d)
        tokens = queries
        if self.grf is not None:
            tokens = torch.cat([queries, self.grf(flat[:, 3 * self.n_coordinates:]).unsqueeze(1)], dim=1)
        attended, _ = self.attention(queries, tokens, tokens, need_weights=False)
        out = self.norm(queries + attended)
        return out.reshape(*lead, self.n_coordinates, -1)


class MJCABiGRU(nn.Module):
    """PI-MJCA-BiGRU and its ablations: features (batch, time, n_features) to activations (batch, time, n_muscles).

    Parameters
    ----------
    config : NetworkConfig
    n_coordinates : int
        Joints (unlocked coordinates) of the model.
    n_grf : int
        Ground reaction force components (0 without external loads).
    n_muscles : int
    n_actuators : int
        Reserve/residual actuators: outputs of :attr:`actuator_head` (none when 0).
    """

    def __init__(self, config: NetworkConfig, n_coordinates: int, n_grf: int, n_muscles: int,
                 n_actuators: int = 0):
        super().__init__()
        self.config = config
        self.n_features = 3 * n_coordinates + n_grf
        d = config.d_model
        integrated = 2 * config.gru_hidden
        if config.architecture == "mjca":
            self.encoder = MultiJointCrossAttention(n_coordinates, n_grf, d, config.heads)
            encoded = n_coordinates * d
        elif config.architecture == "cnn":
            width = max(d, 2 * config.gru_hidden)
            self.encoder = nn.Sequential(
                nn.Conv1d(self.n_features, width, config.cnn_kernel, padding=config.cnn_kernel // 2),
                nn.GELU(),
                nn.Conv1d(width, width, config.cnn_kernel, padding=config.cnn_kernel // 2),
                nn.GELU())
            encoded = width
        else:
            self.encoder = None
            encoded = self.n_features
        self.integration = nn.Sequential(nn.Linear(encoded, integrated), nn.GELU(), nn.Dropout(config.dropout))
        if config.architecture == "mlp":
            self.gru = None
            self.frame_mlp = nn.Sequential(nn.Linear(integrated, 2 * config.gru_hidden), nn.GELU())
        else:
            self.gru = nn.GRU(integrated, config.gru_hidden, num_layers=config.gru_layers, batch_first=True,
                              bidirectional=True, dropout=config.dropout if config.gru_layers > 1 else 0.0)
        self.head = nn.Sequential(nn.Linear(2 * config.gru_hidden + integrated, integrated), nn.GELU(),
                                  nn.Linear(integrated, n_muscles))
        # Built last, so that the other layers' initial weights do not depend on it.
        self.n_actuators = n_actuators
        self.actuator_head = nn.Sequential(
            nn.Linear(2 * config.gru_hidden + integrated, integrated), nn.GELU(),
            nn.Linear(integrated, n_actuators)) if n_actuators else None

    @property
    def per_frame_encoder(self) -> bool:
        """Whether everything before the GRU works frame by frame (not for ``"cnn"``)."""
        return self.config.architecture != "cnn"

    def frame_features(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder and feature integration: (batch, time, n_features) to (batch, time, 2 * gru_hidden)."""
        if features.shape[-1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features per frame, got {features.shape[-1]}")
        if self.config.architecture == "mjca":
            encoded = self.encoder(features).flatten(-2)
        elif self.config.architecture == "cnn":
            encoded = self.encoder(features.transpose(1, 2)).transpose(1, 2)
        else:
            encoded = features
        return self.integration(encoded)

    def _trunk(self, frame: torch.Tensor) -> torch.Tensor:
        """The head's input: BiGRU output (or the ``"mlp"`` hidden layer) and the frame's own features.

        The frame's own features skip past the GRU into the head: SO is a per-frame
        problem, the GRU adds the temporal context.
        """
        sequence = self.frame_mlp(frame) if self.gru is None else self.gru(frame)[0]
        return torch.cat([sequence, frame], dim=-1)

    def sequence_logits(self, frame: torch.Tensor) -> torch.Tensor:
        """BiGRU over time and the head: (batch, time, 2 * gru_hidden) to logits (batch, time, n_muscles)."""
        return self.head(self._trunk(frame))

    def sequence_outputs(self, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Both heads from one BiGRU pass: logits (batch, time, n_muscles) and the actuator head's
        normalised controls (batch, time, n_actuators), or None without actuators.

        The actuator head sees the trunk's features detached: its training never
        reaches the layers that make the activations.
        """
        trunk = self._trunk(frame)
        controls = None if self.actuator_head is None else self.actuator_head(trunk.detach())
        return self.head(trunk), controls

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid outputs, shape (batch, time, n_muscles)."""
        return self.sequence_logits(self.frame_features(features))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Muscle activations in [0, 1], shape (batch, time, n_muscles)."""
        return torch.sigmoid(self.logits(features))


def build_network(config: NetworkConfig, n_coordinates: int, n_grf: int, n_muscles: int,
                  n_actuators: int = 0) -> MJCABiGRU:
    """The network described by ``config`` for a model with these counts."""
    return MJCABiGRU(config, n_coordinates, n_grf, n_muscles, n_actuators)
