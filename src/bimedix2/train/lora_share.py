"""How many parameters a LoRA recipe trains, computed from a model config's shapes alone.

Used to state the trainable share of a recipe (e.g. BiMediX v1's adapters on Mixtral-8x7B) without
loading the model. Covers Llama/Mistral attention (q, k, v, o), dense MLPs (gate, up, down) and
Mixtral-style mixture-of-experts blocks (per expert w1, w2, w3; the router "gate").

A LoRA of rank r on a weight of shape (out, in) adds r x (in + out) parameters. Two expert layouts:

- ``separate`` (Mixtral as released and as the BiMediX paper counts it): w1, w2, w3 are linears of
  every expert, each with its own LoRA;
- ``fused`` (transformers >= 5 stores each layer's experts as two 3-D tensors, ``gate_up_proj`` =
  [w1; w3] and ``down_proj`` = w2, and peft puts one LoRA per expert on each tensor): w1 and w3
  share the LoRA's A matrix, so their adapter is r x (hidden + 2 x intermediate) per expert
  instead of 2 x r x (hidden + intermediate).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
DENSE_MLP = ("gate_proj", "up_proj", "down_proj")
EXPERT = ("w1", "w2", "w3")
ROUTER = "gate"
KNOWN_TARGETS = (*ATTENTION, *DENSE_MLP, *EXPERT, ROUTER)


@dataclass(frozen=True)
class Shapes:
    """The sizes of a decoder-only transformer that fix its parameter count."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    experts: int = 0  # 0: a dense MLP
    tied_embeddings: bool = False

    @classmethod
    def of(cls, config: Any) -> Shapes:
        """From a transformers config (or anything with its attribute names)."""
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(
            vocab=config.vocab_size,
            hidden=config.hidden_size,
            intermediate=config.intermediate_size,
            layers=config.num_hidden_layers,
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=head_dim,
            experts=getattr(config, "num_local_experts", 0) or 0,
            tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        )

    def weights(self) -> dict[str, tuple[int, int]]:
        """(out, in) of each projection of one layer (one expert's for w1/w2/w3)."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        shapes = {
            "q_proj": (q, self.hidden),
            "k_proj": (kv, self.hidden),
            "v_proj": (kv, self.hidden),
            "o_proj": (self.hidden, q),
        }
        if self.experts:
            shapes |= {
                "w1": (self.intermediate, self.hidden),
                "w2": (self.hidden, self.intermediate),
                "w3": (self.intermediate, self.hidden),
                ROUTER: (self.experts, self.hidden),
            }
        else:
            shapes |= {
                "gate_proj": (self.intermediate, self.hidden),
                "up_proj": (self.intermediate, self.hidden),
                "down_proj": (self.hidden, self.intermediate),
            }
        return shapes


def base_parameters(shapes: Shapes) -> int:
    """All parameters: embeddings, output head (unless tied), per-layer projections and norms, final norm."""
    per_layer = 2 * shapes.hidden  # two RMSNorms
    for name, (out, inp) in shapes.weights().items():
        per_layer += out * inp * (shapes.experts if name in EXPERT else 1)
    embeddings = shapes.vocab * shapes.hidden * (1 if shapes.tied_embeddings else 2)
    return embeddings + shapes.layers * per_layer + shapes.hidden


def lora_parameters(
    shapes: Shapes, r: int, targets: Iterable[str], *, experts: Literal["separate", "fused"] = "separate"
) -> int:
    """Parameters a rank-`r` LoRA adds on `targets` (names from KNOWN_TARGETS) in every layer."""
    targets = set(targets)
    weights = shapes.weights()
    unknown = targets - set(weights)
    if unknown:
        raise ValueError(f"no such weight in this model: {', '.join(sorted(unknown))}. Available: {', '.join(weights)}")
    per_layer = 0
    for name in targets:
        out, inp = weights[name]
        per_layer += r * (inp + out) * (shapes.experts if name in EXPERT else 1)
    if experts == "fused" and {"w1", "w3"} <= targets:
        per_layer -= r * shapes.hidden * shapes.experts  # gate_up_proj: one A (hidden -> r) for w1 and w3
    elif experts == "fused" and len({"w1", "w3"} & targets) == 1:
        raise ValueError("with fused experts, w1 and w3 are one tensor (gate_up_proj): target both or neither")
    return shapes.layers * per_layer


def lora_share(
    shapes: Shapes, r: int, targets: Iterable[str], *, experts: Literal["separate", "fused"] = "separate"
) -> float:
    """LoRA parameters as a fraction of the base model's parameters."""
    return lora_parameters(shapes, r, targets, experts=experts) / base_parameters(shapes)
