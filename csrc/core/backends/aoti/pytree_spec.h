// The pytree specs torch.export records for a program's inputs and outputs (the JSON of
// torch.utils._pytree.treespec_dumps, as an AOTInductor package's call spec holds them): how a
// flat list of tensors nests into the tuples, lists and dicts the eager model takes and returns.
#pragma once

#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>
#include <ATen/core/jit_type.h>

namespace tsnative {

struct TreeSpec {
  enum class Kind { kLeaf, kTuple, kList, kDict };
  Kind kind = Kind::kLeaf;
  std::vector<std::string> keys;  // kDict: its keys, in order (as strings)
  std::vector<TreeSpec> children;

  // How many leaves (tensors) the tree holds.
  size_t leaves() const;
};

// Parses a spec ("[1, {\"type\": \"builtins.tuple\", ...}]"). Namedtuples and ordered dicts
// read as tuples and dicts. Throws std::invalid_argument naming what it cannot represent (a
// custom container type, a dict key that is neither a string nor an integer, malformed JSON).
TreeSpec parse_tree_spec(const std::string& json);

// Nests `leaves` (consumed in order) as `spec` says: a tensor, a tuple, a list or a dict of
// them. Throws std::invalid_argument if the count differs from spec.leaves().
c10::IValue unflatten(const TreeSpec& spec, std::vector<at::Tensor> leaves);

// The TorchScript type of what unflatten returns: Tensor, (Tensor, Tensor), Tensor[],
// Dict(str, Tensor), ... (Any for the values of a list or dict that mix kinds).
c10::TypePtr tree_type(const TreeSpec& spec);

}  // namespace tsnative
