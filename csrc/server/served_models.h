// The model versions a server serves, shared by its fronts (HTTP in server.cpp, gRPC in
// grpc_front.cpp), and how that set changes while serving (Triton's model control): models
// loaded at start, then loaded, reloaded and unloaded on request or as the repository's files
// change. A request holds the version it runs on for its whole call, so a reload swaps in the
// new model only once it has loaded and warmed up, and the old one finishes what it has.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/load_options.h"
#include "server/batcher.h"
#include "server/metrics.h"
#include "server/protocol.h"
#include "server/repository.h"
#include "server/served_model.h"

namespace tsnative::server {

// One line to the log (stderr for ts-infer serve), whole, from any thread.
using LogLine = std::function<void(const std::string& line)>;

// How the served set may change, by Triton's names (--model-control).
enum class ModelControl {
  kNone,      // every model found, loaded at start; load / unload refused
  kExplicit,  // the models named at start (--load-model), then load / unload on request
  kPoll,      // every model found, then the repository rescanned: new, changed, removed files
};
std::optional<ModelControl> parse_model_control(const std::string& name);

struct RepositoryOptions {
  std::string path;      // a model file, a folder of them, or a repository
  ModelConfig defaults;  // every model's config, under its own config file
  LoadOptions load;      // device (and the rest) for every model
  ModelControl control = ModelControl::kNone;
  std::vector<std::string> load_at_start;  // kExplicit: these names ("*": all) at start
  int poll_seconds = 15;                   // kPoll: how often the repository is rescanned
};

// A loaded, warmed-up model version. Never changed once serving: a reload makes a new one.
// Its last holder destroys it, the batcher first (which runs what it has queued).
struct Entry {
  ModelSource source;
  std::shared_ptr<ModelMetrics> metrics;  // the version's counters, kept across reloads
  std::unique_ptr<ServedModel> model;
  std::unique_ptr<Batcher> batcher;
};

// One row of the repository index, in Triton's states.
struct IndexRow {
  std::string name, version;
  std::string state;   // READY, LOADING or UNAVAILABLE
  std::string reason;  // why not READY ("" when READY)
};

// One request's answer: the response's tensors, and which of them go as raw bytes.
struct InferAnswer {
  std::vector<ProtocolTensor> tensors;
  std::vector<bool> binary;
};

class ServedModels {
 public:
  // Finds the models (nothing is loaded yet). Throws OptionError (see find_models); `log`
  // gets a line for each file left out, and for each load, unload and failure later.
  ServedModels(RepositoryOptions options, LogLine log);
  ~ServedModels();  // stops polling; each version goes once its last request has finished
  ServedModels(const ServedModels&) = delete;
  ServedModels& operator=(const ServedModels&) = delete;

  // Loads what the control mode serves from the start, one model after another, until
  // `stopped`; returns the "ready:" summary. Throws what a failed load throws (the core's
  // Error), or OptionError for a --load-model the repository does not hold.
  std::string load_at_start(const std::function<bool()>& stopped);

  // Model control's requests (kExplicit only, else ProtocolError 400). load: every version of
  // `name` as the repository holds it now (a model added since the start included), each
  // loaded and warmed up before any is swapped in; a file that fails leaves what served
  // before serving, and throws ProtocolError 400 with the cause. unload: ProtocolError 404 for
  // a model the repository never held. `parameters`: the names of the request's parameters;
  // Triton's "config" and "file:" overrides of a load are refused (ProtocolError 400), an
  // unload's "unload_dependents" taken (no model here depends on another).
  void load(const std::string& name, const std::vector<std::string>& parameters = {});
  void unload(const std::string& name, const std::vector<std::string>& parameters = {});
  // Every model the repository holds now or serves, with its state (the repository rescanned).
  std::vector<IndexRow> index() const;

  // The serving version a request names (the version given, else the newest). ProtocolError
  // 404: unknown model or version, or one not loaded; 503: loading.
  std::shared_ptr<const Entry> find_ready(const std::string& name,
                                          const std::string& version) const;
  // Whether that version serves; ProtocolError 404 for a model the repository never held.
  bool is_ready(const std::string& name, const std::string& version) const;
  // The serving versions of a model, oldest first.
  std::vector<std::string> versions(const std::string& name) const;
  // Every serving version (for /metrics).
  std::vector<std::shared_ptr<const Entry>> serving() const;

  // Runs one parsed request on a serving version through its batcher. Throws ProtocolError
  // (the request does not fit the model) or the core's Error (the model refused it, or failed).
  InferAnswer infer(const Entry& entry, const InferRequest& request) const;

  // kPoll: rescans every poll_seconds on a thread of its own until stop_polling(). New and
  // changed models are loaded, removed ones unloaded; a failure is logged, and what served
  // goes on serving.
  void start_polling();
  void stop_polling();

 private:
  struct Status {
    std::string state, reason;
  };
  std::vector<ModelSource> scan(std::vector<std::string>* skipped = nullptr) const;
  void refuse_unless_explicit() const;
  static void refuse_parameters(const std::vector<std::string>& given,
                                const std::vector<std::string>& accepted);
  void load_now(const std::string& name, const std::vector<ModelSource>& sources);
  void unload_now(const std::string& name);
  std::shared_ptr<const Entry> load_entry(const ModelSource& source);
  void poll();

  const RepositoryOptions options_;
  const LogLine log_;
  std::mutex changing_;              // one load or unload at a time
  mutable std::shared_mutex mutex_;  // guards everything below
  std::map<std::string, std::vector<std::shared_ptr<const Entry>>> serving_;  // oldest first
  std::map<std::string, Status> status_;          // every name seen, serving or not
  std::map<std::string, std::string> signature_;  // what each name's last load read (poll)
  std::map<std::string, std::shared_ptr<ModelMetrics>> metrics_;  // by "name/version"
  std::mutex polling_mutex_;
  std::condition_variable polling_stop_;
  bool polling_stopped_ = false;
  std::thread poller_;
};

}  // namespace tsnative::server
