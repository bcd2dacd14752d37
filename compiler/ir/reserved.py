"""The names a generated module reserves: what a node may not be called as it is.

Facts of the generated module's contract, read by the checker (a model may
not take a top-level name) and by the back end (a node's attribute or local
gets a trailing ``_`` when it would collide).
"""

from __future__ import annotations

__all__ = ["MODULE_ATTRIBUTES", "RESERVED_LOCALS", "MODULE_GLOBALS"]

# Attributes and methods of torch.nn.Module, public and private (torch 2.13; listed
# here so that the compiler never imports torch; tests/test_lower.py checks the
# list against torch), and the members of every generated class.
MODULE_ATTRIBUTES = frozenset(
    """
    add_module apply bfloat16 buffers call_super_init children compile cpu cuda
    double dump_patches eval extra_repr float forward get_buffer get_extra_state
    get_parameter get_submodule half ipu load_state_dict modules mtia
    named_buffers named_children named_modules named_parameters parameters
    register_backward_hook register_buffer register_forward_hook
    register_forward_pre_hook register_full_backward_hook
    register_full_backward_pre_hook register_load_state_dict_post_hook
    register_load_state_dict_pre_hook register_module register_parameter
    register_state_dict_post_hook register_state_dict_pre_hook requires_grad_
    set_extra_state set_submodule share_memory state_dict to to_empty train
    training type xpu zero_grad forward_logits features tasks constraints
    weighting gate_banks expert_pools
    _apply _backward_hooks _backward_pre_hooks _buffers _call_impl
    _compiled_call_impl _forward_hooks _forward_hooks_always_called
    _forward_hooks_with_kwargs _forward_pre_hooks _forward_pre_hooks_with_kwargs
    _get_backward_hooks _get_backward_pre_hooks _get_name _is_full_backward_hook
    _load_from_state_dict _load_state_dict_post_hooks _load_state_dict_pre_hooks
    _maybe_warn_non_full_backward_hook _modules _named_members
    _non_persistent_buffers_set _parameters _register_load_state_dict_pre_hook
    _register_state_dict_hook _replicate_for_data_parallel _save_to_state_dict
    _slow_forward _state_dict_hooks _state_dict_pre_hooks _version
    _wrapped_call_impl
    """.split()
)

# Names the generated methods use, and Python's builtins: a local must not hide them.
RESERVED_LOCALS = frozenset(
    """
    batch logits self torch nn rt Tensor annotations
    abs aiter all anext any ascii bin bool breakpoint bytearray bytes callable chr
    classmethod compile complex copyright credits delattr dict dir divmod
    enumerate eval exec exit filter float format frozenset getattr globals
    hasattr hash help hex id input int isinstance issubclass iter len license
    list locals map max memoryview min next object oct open ord pow print
    property quit range repr reversed round set setattr slice sorted
    staticmethod str sum super tuple type vars zip
    """.split()
)

# Names the generated module binds at its top level: the class must not take one.
MODULE_GLOBALS = frozenset({"torch", "nn", "rt", "Tensor", "annotations"})
