// What every format's backend is loaded with: the device, the optimize level, the warm-up
// inputs. Neutral ground between Model (model.h) and the backends below it (backends/*/):
// both include this, neither includes the other's header.
// The optimize levels are listed once, in load_options.cpp, with what each does; what each means
// for a TorchScript module: backends/torchscript/variants.h (an AOTInductor package has only
// "none": Inductor optimized it when it compiled it).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <ATen/core/ivalue.h>

namespace tsnative {

enum class OptimizeLevel { kNone, kExact, kFast, kBf16 };

// "none", "exact", "fast" or "bf16". Throws OptionError for anything else.
OptimizeLevel parse_optimize_level(const std::string& name);

// OptimizeLevel -> its name, as parse_optimize_level reads it.
const char* optimize_level_name(OptimizeLevel level);

// A level's name and what it does, in a line: front ends show these (ts-infer's --optimize
// help, tsnative.OPTIMIZE_LEVELS), never a list of their own.
struct OptimizeLevelInfo {
  std::string name;
  std::string summary;
};

// Every level, in the order of OptimizeLevel.
const std::vector<OptimizeLevelInfo>& optimize_levels();

// Every level's name, in the same order (the choices a front end accepts).
const std::vector<std::string>& optimize_level_names();

// How a model is loaded. Front ends fill this from keyword arguments or flags; the defaults
// here are the only defaults.
struct LoadOptions {
  std::string device = "cpu";  // "cpu", "cuda" or "cuda:N"
  OptimizeLevel optimize = OptimizeLevel::kNone;
  // Arguments of forward used to warm the model up inside load (the profiling executor makes
  // the first calls slow) and, with several optimization variants, to time them and keep the
  // fastest. If empty, a random input of the metadata's input_shape is used for image models.
  std::vector<c10::IValue> warmup_inputs;
  int warmup_runs = 3;  // calls before timing; the profiling executor optimizes on the second
  // Where the variant each optimize level chose is remembered, so that loading the same model
  // for the same inputs again skips the timing (backends/torchscript/choice_cache.h); ""
  // remembers nothing. Unset: $TSNATIVE_CACHE_DIR, else $XDG_CACHE_HOME/tsnative, else
  // ~/.cache/tsnative.
  std::optional<std::string> choice_cache_dir;
};

}  // namespace tsnative
