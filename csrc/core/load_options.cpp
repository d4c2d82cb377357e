#include "core/load_options.h"

#include <algorithm>

#include "core/errors.h"

namespace tsnative {

const std::vector<OptimizeLevelInfo>& optimize_levels() {
  static const std::vector<OptimizeLevelInfo> levels{
      {"none", "run as saved"},
      {"exact", "float32, frozen and fused (the variant fastest on this input)"},
      {"fast", "exact, and bfloat16 where the CPU computes it natively (AVX512-BF16 or AMX)"},
      {"bf16", "bfloat16 on any CPU (emulated, slowly, where it has no native bf16)"},
  };
  return levels;
}

const std::vector<std::string>& optimize_level_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> all;
    for (const auto& level : optimize_levels()) all.push_back(level.name);
    return all;
  }();
  return names;
}

OptimizeLevel parse_optimize_level(const std::string& name) {
  const auto& names = optimize_level_names();
  const auto found = std::find(names.begin(), names.end(), name);
  if (found == names.end()) {
    std::string choices;
    for (size_t i = 0; i < names.size(); ++i) {
      choices += (i == 0 ? "'" : i + 1 == names.size() ? " or '" : ", '") + names[i] + "'";
    }
    throw OptionError("unknown optimize level '" + name + "': expected " + choices);
  }
  return static_cast<OptimizeLevel>(found - names.begin());
}

const char* optimize_level_name(OptimizeLevel level) {
  return optimize_level_names().at(static_cast<size_t>(level)).c_str();
}

}  // namespace tsnative
