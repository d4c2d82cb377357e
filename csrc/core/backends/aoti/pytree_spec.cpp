#include "core/backends/aoti/pytree_spec.h"

#include <stdexcept>

#include <nlohmann/json.hpp>

namespace tsnative {
namespace {

using Json = nlohmann::json;

TreeSpec parse_node(const Json& node) {
  if (!node.is_object()) throw std::invalid_argument("a spec node is not a JSON object");
  TreeSpec spec;
  const auto& type = node.at("type");
  if (type.is_null()) return spec;
  const auto name = type.get<std::string>();
  if (name == "builtins.tuple" || name == "collections.namedtuple" ||
      name == "torch.return_types") {
    spec.kind = TreeSpec::Kind::kTuple;
  } else if (name == "builtins.list") {
    spec.kind = TreeSpec::Kind::kList;
  } else if (name == "builtins.dict" || name == "collections.OrderedDict" ||
             name == "collections.defaultdict") {
    spec.kind = TreeSpec::Kind::kDict;
    // The context is the keys, itself serialized as a JSON string (a defaultdict's also holds
    // its default factory).
    auto context = Json::parse(node.at("context").get<std::string>());
    if (name == "collections.defaultdict") context = context.at("dict_context");
    for (const auto& key : context) {
      if (key.is_string()) {
        spec.keys.push_back(key.get<std::string>());
      } else if (key.is_number_integer()) {
        spec.keys.push_back(std::to_string(key.get<int64_t>()));
      } else {
        throw std::invalid_argument("a dict key of JSON type " + std::string(key.type_name()));
      }
    }
  } else {
    throw std::invalid_argument("a container of type " + name);
  }
  for (const auto& child : node.at("children_spec")) spec.children.push_back(parse_node(child));
  if (spec.kind == TreeSpec::Kind::kDict && spec.keys.size() != spec.children.size()) {
    throw std::invalid_argument("a dict with " + std::to_string(spec.keys.size()) + " keys and " +
                                std::to_string(spec.children.size()) + " values");
  }
  return spec;
}

c10::IValue build(const TreeSpec& spec, std::vector<at::Tensor>& leaves, size_t& next) {
  if (spec.kind == TreeSpec::Kind::kLeaf) return std::move(leaves.at(next++));
  std::vector<c10::IValue> children;
  for (const auto& child : spec.children) children.push_back(build(child, leaves, next));
  switch (spec.kind) {
    case TreeSpec::Kind::kTuple:
      return c10::ivalue::Tuple::create(std::move(children));
    case TreeSpec::Kind::kList: {
      c10::impl::GenericList list(tree_type(spec)->containedType(0));
      for (auto& child : children) list.push_back(std::move(child));
      return list;
    }
    case TreeSpec::Kind::kDict: {
      c10::impl::GenericDict dict(c10::StringType::get(), tree_type(spec)->containedType(1));
      for (size_t i = 0; i < children.size(); ++i) dict.insert(spec.keys[i], children[i]);
      return dict;
    }
    case TreeSpec::Kind::kLeaf:
      break;
  }
  return {};
}

// The children's common type, or Any.
c10::TypePtr element_type(const TreeSpec& spec) {
  c10::TypePtr common;
  for (const auto& child : spec.children) {
    const auto type = tree_type(child);
    if (common && *common != *type) return c10::AnyType::get();
    common = type;
  }
  return common ? common : c10::TensorType::get();
}

}  // namespace

size_t TreeSpec::leaves() const {
  if (kind == Kind::kLeaf) return 1;
  size_t count = 0;
  for (const auto& child : children) count += child.leaves();
  return count;
}

TreeSpec parse_tree_spec(const std::string& json) {
  try {
    const auto parsed = Json::parse(json);
    // [protocol version, root]
    if (!parsed.is_array() || parsed.size() != 2 || parsed[0] != 1) {
      throw std::invalid_argument("not a version-1 pytree spec");
    }
    return parse_node(parsed[1]);
  } catch (const Json::exception& e) {
    throw std::invalid_argument(std::string("a malformed pytree spec: ") + e.what());
  }
}

c10::IValue unflatten(const TreeSpec& spec, std::vector<at::Tensor> leaves) {
  if (leaves.size() != spec.leaves()) {
    throw std::invalid_argument(std::to_string(leaves.size()) + " tensors for a spec of " +
                                std::to_string(spec.leaves()));
  }
  size_t next = 0;
  return build(spec, leaves, next);
}

c10::TypePtr tree_type(const TreeSpec& spec) {
  switch (spec.kind) {
    case TreeSpec::Kind::kLeaf:
      return c10::TensorType::get();
    case TreeSpec::Kind::kTuple: {
      std::vector<c10::TypePtr> types;
      for (const auto& child : spec.children) types.push_back(tree_type(child));
      return c10::TupleType::create(std::move(types));
    }
    case TreeSpec::Kind::kList:
      return c10::ListType::create(element_type(spec));
    case TreeSpec::Kind::kDict:
      return c10::DictType::create(c10::StringType::get(), element_type(spec));
  }
  return c10::AnyType::get();
}

}  // namespace tsnative
