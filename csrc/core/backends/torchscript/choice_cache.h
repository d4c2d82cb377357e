// The choice cache: which variant an optimize level chose for a model, remembered on disk so
// that loading the same model again (in this process or the next) skips the timing rounds.
// An entry is one small JSON file named by a hash of its key, and holds the key itself: an
// entry whose key differs (a hash collision, a changed model) is a miss, never a wrong choice.
// Every failure to read or write (no such directory, read-only, full disk) is a miss too.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <ATen/core/ivalue.h>
#include <caffe2/serialize/read_adapter_interface.h>

namespace tsnative {

// $TSNATIVE_CACHE_DIR if set (empty: no cache), else $XDG_CACHE_HOME/tsnative, else
// $HOME/.cache/tsnative; "" if none of them is set.
std::string default_choice_cache_dir();

// A 64-bit FNV-1a hash of everything `archive` holds, as 16 hex digits.
std::string archive_hash(caffe2::serialize::ReadAdapterInterface& archive);

// What a choice depends on besides the model: the level, the device, the inputs' types and
// shapes, the CPU (model, capabilities), the intra-op thread count, LibTorch and tsnative.
std::string choice_key(const std::string& model_hash, const std::string& level,
                       const std::string& device, const std::vector<c10::IValue>& inputs);

struct CachedChoice {
  std::string variant;  // the name of the chosen variant
  std::string timings;  // what timed it, as optimization() said then
};

// The remembered choice for `key` in `dir`, if there is one.
std::optional<CachedChoice> cached_choice(const std::string& dir, const std::string& key);

// Remembers `choice` for `key` in `dir`, written to a temporary file and renamed into place,
// so that concurrent writers and readers never see half an entry. Returns why it could not
// ("" if it did).
std::string remember_choice(const std::string& dir, const std::string& key,
                            const CachedChoice& choice);

}  // namespace tsnative
