// Checks the pickles of a PyTorch zip archive (a TorchScript model, or a tensor file written by
// torch.save) before LibTorch reads them. Its unpickler allocates and zero-fills the length a
// pickle declares for a string, then reads: a 2 KB file declaring a 4 GB string took 4 GB of
// memory, and one storing memo entry 1.7 billion asked for 27 GB (both found by fuzzing).
// Everything else about a corrupt archive is left to LibTorch.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include <caffe2/serialize/read_adapter_interface.h>

namespace tsnative {

// Why `pickle` (one pickled record) cannot be unpickled safely: a length-prefixed string,
// bytes or integer that runs past its end, or a memo index beyond what its size can number
// (the unpickler grows its memo table to it). "" if there is none (also for bytes that are not a
// pickle at all: the unpickler reports those).
std::string pickle_problem(const char* pickle, size_t size);

// The same for every pickle in the archive, named by its record. "" if the archive is safe to
// hand to LibTorch, or is not a zip archive that LibTorch can open (its loader then says so).
std::string archive_problem(
    const std::shared_ptr<caffe2::serialize::ReadAdapterInterface>& archive);

}  // namespace tsnative
