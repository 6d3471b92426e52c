"""nnx-core: Variables, Pytrees and Modules, Rngs, the graph API, State and filters.

Everything a custom framework needs, with JAX, numpy and (optionally)
treescope as its only dependencies. The public interface is ``__all__``;
modules starting with an underscore are private.
"""

from nnx.core import (
    _pytree_repr,  # noqa: F401  (installs the text of Pytrees)
    _pytree_view,  # noqa: F401  (installs the JAX view of Pytrees)
)
from nnx.core._carry import Carry
from nnx.core._checkpoint import restore_checkpoint, save_checkpoint
from nnx.core._convert import (
    as_array_vars,
    as_hijax_vars,
    as_immutable_vars,
    as_mutable_vars,
    as_pytree_vars,
    as_ref_vars,
    freeze,
    mutable,
    to_arrays,
    to_refs,
    vars_as,
    with_vars,
)
from nnx.core._defaults import (
    VarDefaults,
    use_hijax,
    use_mutable_arrays,
    use_refs,
    using_hijax,
    var_defaults,
)
from nnx.core._deprecations import deprecated
from nnx.core._display import display
from nnx.core._errors import (
    AliasingError,
    FilterError,
    HijaxError,
    ImmutableVariableError,
    NnxError,
    PytreeStaticError,
    StructureError,
    TraceContextError,
)
from nnx.core._filters import (
    All,
    Any,
    Everything,
    Filter,
    Not,
    Nothing,
    OfType,
    PathContains,
    PathIn,
    Predicate,
    WithTag,
    filters_to_predicates,
    to_predicate,
)
from nnx.core._flatten import FlatGraph, filter_leaves, flatten, is_graph_node, unflatten
from nnx.core._flatten_cache import FlattenCache, graph_epoch
from nnx.core._graph import (
    clone,
    graphdef,
    merge,
    pop,
    split,
    state,
    unpack,
    update,
    variables,
)
from nnx.core._graph_api import (
    as_pure,
    is_array_ref,
    is_node,
    is_node_leaf,
    is_pytree_node,
    jax_to_nnx_path,
    map,
    prefix,
)
from nnx.core._graph_mode import (
    GraphMode,
    GraphSetting,
    graph_settings,
    resolve_graph_mode,
    set_graph_mode,
    set_graph_updates,
)
from nnx.core._graph_tools import PureState, call, pure, recursive_map
from nnx.core._graph_tree import GraphTree, NodeStates, from_tree, to_tree
from nnx.core._graphdef import GraphDef
from nnx.core._ids import UUID, UUIDManager, uuid
from nnx.core._module import (
    Module,
    capture,
    iter_children,
    iter_module_children,
    iter_modules,
    view,
    view_info,
    with_attributes,
)
from nnx.core._move import move_into
from nnx.core._paths import Key, PathParts, key_order
from nnx.core._pytree import (
    Dict,
    List,
    Object,
    Pytree,
    graph_ref,
    is_data,
    register_data_type,
)
from nnx.core._pytree_checks import check_pytree, data, dataclass, has_data, static
from nnx.core._pytree_marks import Data, Static
from nnx.core._refs import new_ref
from nnx.core._rngs import (
    Rngs,
    RngStream,
    SplitBackups,
    backup_keys,
    fork_rngs,
    reseed,
    restore_rngs,
    with_rngs,
)
from nnx.core._sharding import (
    StateSharding,
    abstract_with_sharding,
    as_abstract,
    get_abstract_model,
    get_named_sharding,
    get_partition_spec,
    get_var_pspec,
    shard_state,
)
from nnx.core._sharding_rules import logical_axis_rules, use_eager_sharding, using_eager_sharding
from nnx.core._state import (
    FlatState,
    GraphState,
    State,
    diff_state,
    filter_state,
    from_flat_state,
    map_state,
    merge_state,
    replace_by_pure_dict,
    restore_int_paths,
    split_state,
    to_flat_state,
    to_pure_dict,
)
from nnx.core._storage import (
    StorageMode,
    StoredBatch,
    VariableRecord,
    is_storage_cell,
    read_stored,
    read_stored_many,
    stand_in,
    storage_mode,
    variable_from_stored,
    variable_record,
    variable_trace,
    write_stored,
    write_stored_many,
)
from nnx.core._traversals import (
    empty_node,
    flatten_mapping,
    flatten_to_sequence,
    unflatten_mapping,
)
from nnx.core._typing import A, M, VariableState
from nnx.core._update_context import (
    MergeContext,
    SplitContext,
    UpdateContext,
    current_update_context,
    merge_context,
    split_context,
    update_context,
)
from nnx.core._var_metadata import VariableMetadata, with_metadata, with_partitioning
from nnx.core._var_names import (
    register_variable_name,
    variable_name_from_type,
    variable_type_from_name,
)
from nnx.core._variables import (
    BatchStat,
    Cache,
    Intermediate,
    Param,
    Perturbation,
    RngCount,
    RngKey,
    RngState,
    Variable,
    is_variable,
)
from nnx.core._version import __version__
from nnx.core._walk import find_duplicates, iter_graph, require_tree, set_metadata

__all__ = [
    # type names for annotations
    "A",
    "M",
    "VariableState",
    # Variables
    "Variable",
    "Param",
    "BatchStat",
    "Cache",
    "Intermediate",
    "Perturbation",
    "RngState",
    "RngKey",
    "RngCount",
    "VariableMetadata",
    "with_partitioning",
    "with_metadata",
    "set_metadata",
    "is_variable",
    "register_variable_name",
    "variable_name_from_type",
    "variable_type_from_name",
    # the order of keys (and so of leaves) shared by every package
    "key_order",
    # storage (what transforms build on)
    "StorageMode",
    "VariableRecord",
    "storage_mode",
    "variable_record",
    "variable_trace",
    "variable_from_stored",
    "is_storage_cell",
    "new_ref",
    # structural updates across a JAX transform written by hand
    "update_context",
    "current_update_context",
    "UpdateContext",
    "split_context",
    "SplitContext",
    "merge_context",
    "MergeContext",
    "read_stored",
    "read_stored_many",
    "write_stored",
    "write_stored_many",
    "StoredBatch",
    "stand_in",
    # storage modes
    "var_defaults",
    "VarDefaults",
    # how transforms treat objects (graph mode / tree mode)
    "set_graph_mode",
    "set_graph_updates",
    "graph_settings",
    "resolve_graph_mode",
    "GraphMode",
    "GraphSetting",
    "vars_as",
    "with_vars",
    "use_refs",
    "use_hijax",
    "using_hijax",
    "use_mutable_arrays",
    "to_refs",
    "to_arrays",
    "mutable",
    "freeze",
    "as_immutable_vars",
    "as_mutable_vars",
    "as_hijax_vars",
    "as_pytree_vars",
    "as_ref_vars",
    "as_array_vars",
    # objects
    "Pytree",
    "Object",
    "Module",
    "data",
    "static",
    "Data",
    "Static",
    "dataclass",
    "check_pytree",
    "has_data",
    "graph_ref",
    "is_data",
    "register_data_type",
    "List",
    "Dict",
    "iter_modules",
    "iter_children",
    "view",
    "view_info",
    "capture",
    "with_attributes",
    # rngs
    "Rngs",
    "RngStream",
    "reseed",
    "fork_rngs",
    "restore_rngs",
    "backup_keys",
    "with_rngs",
    "SplitBackups",
    # graph
    "GraphDef",
    "FlatGraph",
    "FlattenCache",
    "GraphTree",
    "flatten",
    "unflatten",
    "move_into",
    "graph_epoch",
    "is_graph_node",
    "filter_leaves",
    "split",
    "unpack",
    "merge",
    "update",
    "state",
    "variables",
    "graphdef",
    "clone",
    "pop",
    "iter_graph",
    "find_duplicates",
    "require_tree",
    "to_tree",
    "from_tree",
    "call",
    "recursive_map",
    "pure",
    "iter_module_children",
    "GraphState",
    "PureState",
    "as_pure",
    "map",
    "is_node",
    "is_pytree_node",
    "jax_to_nnx_path",
    "is_node_leaf",
    "is_array_ref",
    "prefix",
    "NodeStates",
    # state
    "State",
    "to_flat_state",
    "from_flat_state",
    "diff_state",
    "filter_state",
    "split_state",
    "merge_state",
    "to_pure_dict",
    "replace_by_pure_dict",
    "FlatState",
    "Key",
    "PathParts",
    "map_state",
    "restore_int_paths",
    # filters
    "Filter",
    "Predicate",
    "to_predicate",
    "OfType",
    "PathContains",
    "PathIn",
    "filters_to_predicates",
    "WithTag",
    "All",
    "Any",
    "Not",
    "Everything",
    "Nothing",
    # loop markers (nnx.scan's axes, nnx.RNN's state_axes)
    "Carry",
    # sharding
    "get_partition_spec",
    "get_named_sharding",
    "get_var_pspec",
    "shard_state",
    "logical_axis_rules",
    "use_eager_sharding",
    "using_eager_sharding",
    "get_abstract_model",
    "abstract_with_sharding",
    "as_abstract",
    "StateSharding",
    # checkpoints (orbax-checkpoint, the nnx-core[checkpoint] extra)
    "save_checkpoint",
    "restore_checkpoint",
    # display
    "display",
    # nested mappings, ids (Flax's nnx.traversals, nnx.ids)
    "flatten_mapping",
    "unflatten_mapping",
    "flatten_to_sequence",
    "empty_node",
    "UUID",
    "UUIDManager",
    "uuid",
    "deprecated",
    # errors
    "NnxError",
    "ImmutableVariableError",
    "TraceContextError",
    "FilterError",
    "StructureError",
    "PytreeStaticError",
    "HijaxError",
    "AliasingError",
]

# Flax NNX's module paths served by this package (see nnx/__init__.py): dotted path
# under `nnx` -> names of nnx.core it exposes ("alias=attribute" to rename). The
# siblings declare theirs (nn.*, helpers, compat.jit, summary, ...) the same way.
_GRAPH_PATH = (
    "GraphDef FlatGraph GraphTree FlattenCache Key PathParts split merge update state graphdef clone "
    "pop iter_graph iter_modules iter_children find_duplicates flatten unflatten "
    "is_graph_node variables to_tree from_tree set_metadata graph_epoch pure as_pure map "
    "prefix recursive_map call update_context current_update_context UpdateContext "
    "split_context SplitContext merge_context MergeContext unpack GraphState "
    "FlatState State Static Variable deprecated iter_module_children map_state "
    "set_graph_mode set_graph_updates vars_as with_vars is_node is_pytree_node jax_to_nnx_path is_node_leaf"
)
__nnx_paths__: dict[str, str] = {
    "graph": _GRAPH_PATH,
    "graphlib": _GRAPH_PATH,
    "filterlib": (
        "Filter Predicate to_predicate OfType PathContains PathIn WithTag All Any Not Everything Nothing "
        "Key filters_to_predicates"
    ),
    "statelib": (
        "State to_flat_state from_flat_state filter_state split_state merge_state "
        "to_pure_dict replace_by_pure_dict FlatState map_state restore_int_paths Key diff=diff_state"
    ),
    "variablelib": (
        "A Variable VariableState VariableMetadata Param BatchStat Cache Intermediate "
        "Perturbation RngState RngKey RngCount with_metadata with_partitioning is_variable "
        "register_variable_name variable_name_from_type variable_type_from_name use_hijax using_hijax "
        "is_array_ref "
        "var_defaults VarDefaults use_eager_sharding using_eager_sharding"
    ),
    "rnglib": (
        "Rngs RngStream RngState RngKey RngCount SplitBackups reseed fork_rngs restore_rngs backup_keys "
        "with_rngs Pytree Variable Key"
    ),
    "pytreelib": (
        "Pytree Object Data Static dataclass data static register_data_type is_data "
        "check_pytree has_data Variable"
    ),
    "object": "Pytree Object Data Static dataclass data static register_data_type is_data",
    "module": (
        "M Module iter_modules iter_children iter_module_children Pytree State Key capture "
        "split_state view view_info with_attributes"
    ),
    "spmd": (
        "get_partition_spec get_named_sharding get_var_pspec with_partitioning abstract_with_sharding "
        "as_abstract get_abstract_model deprecated"
    ),
    "extract": "NodeStates Pytree State from_tree to_tree prefix",
    "helpers": "Dict List Module Rngs State Variable GraphDef",
    "traversals": "flatten_mapping unflatten_mapping flatten_to_sequence empty_node",
    "ids": "UUID UUIDManager uuid",
    "deprecations": "deprecated",
    "visualization": "display",
    # graph-mode spellings (Flax's nnx.compat); nnx's graph API is graph mode already
    "compat": (
        "split state clone graphdef flatten iter_graph iter_modules iter_children reseed fork_rngs "
        "backup_keys recursive_map view view_info get_abstract_model"
    ),
}
