// Checks a PyTorch zip archive (a TorchScript model, or a tensor file written by torch.save)
// before LibTorch reads it, for what would make LibTorch allocate far more than the file
// holds: it allocates what a file declares, then reads. Found by fuzzing: a pickle declaring a
// 4 GB string in a 2 KB file (4 GB allocated and zeroed), one storing memo entry 1.7 billion
// (27 GB asked for), a deflated record of 24 bytes declaring 889 MB (3.7 GB used). Everything
// else about a corrupt archive is left to LibTorch to report. Also a storage record shorter than
// its pickle declares: LibTorch trusts the declaration (found by fuzzing: 0 bytes for 3 floats,
// read on the model's first call).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caffe2/serialize/read_adapter_interface.h>

namespace tsnative {

// Why `pickle` (one pickled record) cannot be unpickled safely: a length-prefixed string,
// bytes or integer that runs past its end, or a memo index beyond what its size can number
// (the unpickler grows its memo table to it). "" if there is none (also for bytes that are not a
// pickle at all: the unpickler reports those).
std::string pickle_problem(const char* pickle, size_t size);

// A storage a pickle declares (its persistent id: 'storage', class, key, location, numel).
struct StorageDeclaration {
  std::string key;  // the record data/<key> (constants/<key> for constants.pkl)
  int64_t numel;
  size_t itemsize;  // from the class: FloatStorage 4, LongStorage 8, ...
};

// The storages `pickle` declares, found by simulating the unpickler's stack for the opcodes
// LibTorch's unpickler reads; the simulation stops at the first opcode it does not know.
std::vector<StorageDeclaration> storage_declarations(const char* pickle, size_t size);

// The same for the pickles LibTorch reads (data.pkl, constants.pkl), named by their record;
// also a record whose declared size could not come from the bytes after it even deflated, and
// a zip directory that LibTorch cannot list (a record outside the archive's folder), and a
// storage record holding fewer bytes than its pickle declares (LibTorch trusts the declaration
// and reads past the record on first use). "" if the
// archive is safe to hand to LibTorch, or is not a zip archive that LibTorch can open at all
// (its loader then says so).
std::string archive_problem(
    const std::shared_ptr<caffe2::serialize::ReadAdapterInterface>& archive);

}  // namespace tsnative
