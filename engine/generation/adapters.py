"""LoRA adapters on a live model without ever writing its base weights: the PEFT surgery behind `use_adapter`.

Adapters are attached through PEFT's multi-adapter API and stay unmerged: the new one is loaded beside the old,
made active, then the old one is deleted (engine.generation.model). The base weights are never written, so they stay
bit-identical after any number of switches in every dtype. (Merging and unmerging is arithmetic in the weights' own
precision: in bf16 one unmerge→merge round trip changed about half of a matrix's elements.) Merging stays an opt-in
for speed, and then the base weights it overwrites are restored from copies taken before (`Originals`), not by
subtraction; a failed load is taken out again layer by layer. peft is imported inside the functions.
"""

from __future__ import annotations

from typing import Any

import torch

Originals = dict[str, tuple[torch.Tensor, torch.Tensor | None]]  # LoRA layer name -> base weight, bias (on cpu)


def remove_failed_load(model: Any, name: str) -> None:
    """Remove what a failed load of adapter `name` injected, leaving `model` as it was before."""
    from peft import PeftModel
    from peft.tuners.tuners_utils import BaseTunerLayer

    if isinstance(model, PeftModel):
        if name in model.peft_config:
            model.delete_adapter(name)
        model.set_adapter(model.active_adapter)  # the served adapter stays active
        return
    # PeftModel.from_pretrained injects its layers into the bare model before loading the weights.
    for key in [k for k, m in model.named_modules() if isinstance(m, BaseTunerLayer)]:
        layer = model.get_submodule(key)
        if isinstance(layer, BaseTunerLayer):  # not already replaced through an outer tuner layer
            parent, _, child = key.rpartition(".")
            setattr(model.get_submodule(parent), child, layer.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config


def lora_layers(model: Any) -> dict[str, Any]:
    """The LoRA-wrapped layers of a PeftModel's base, by module name."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {key: module for key, module in model.get_base_model().named_modules()
            if isinstance(module, BaseTunerLayer)}


def merge_keeping_originals(model: Any, originals: Originals) -> None:
    """Fold the active adapter into the weights, first copying (once) every base weight it will overwrite."""
    for key, layer in lora_layers(model).items():
        if key not in originals:
            base = layer.get_base_layer()
            bias = base.bias.detach().to("cpu", copy=True) if base.bias is not None else None
            originals[key] = (base.weight.detach().to("cpu", copy=True), bias)
    model.merge_adapter()


def unmerge_exactly(model: Any, originals: Originals) -> None:
    """Undo a merge exactly: PEFT's unmerge clears its state, then the original copies overwrite the rounding
    its subtraction left behind."""
    model.unmerge_adapter()
    with torch.no_grad():
        for key, layer in lora_layers(model).items():
            weight, bias = originals[key]
            base = layer.get_base_layer()
            base.weight.copy_(weight)
            if bias is not None:
                base.bias.copy_(bias)
