#include "server/served_models.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>
#include <system_error>
#include <utility>

#include "core/errors.h"

namespace tsnative::server {

namespace {

constexpr const char* kReady = "READY";
constexpr const char* kLoading = "LOADING";
constexpr const char* kUnavailable = "UNAVAILABLE";

// What a load read, to tell a changed model from one left alone: each file's path, size and
// modification time, its config's too.
std::string signature_of(const std::vector<ModelSource>& sources) {
  std::string out;
  const auto stamp = [&out](const std::string& path) {
    std::error_code error;
    const auto size = std::filesystem::file_size(path, error);
    const auto time = std::filesystem::last_write_time(path, error);
    out += path + ":" + std::to_string(error ? 0 : size) + ":" +
           std::to_string(error ? 0 : time.time_since_epoch().count()) + ";";
  };
  for (const auto& source : sources) {
    stamp(source.path);
    if (!source.config.empty()) stamp(source.config);
  }
  return out;
}

std::vector<ModelSource> named(const std::vector<ModelSource>& sources, const std::string& name) {
  std::vector<ModelSource> out;
  std::copy_if(sources.begin(), sources.end(), std::back_inserter(out),
               [&](const ModelSource& source) { return source.name == name; });
  return out;
}

std::string describe(const Entry& entry) {
  return entry.source.name + " (version " + entry.source.version + ", " + entry.model->platform() +
         (entry.model->batching() ? ", batched" : "") + ")";
}

}  // namespace

std::optional<ModelControl> parse_model_control(const std::string& name) {
  if (name == "none") return ModelControl::kNone;
  if (name == "explicit") return ModelControl::kExplicit;
  if (name == "poll") return ModelControl::kPoll;
  return std::nullopt;
}

ServedModels::ServedModels(RepositoryOptions options, LogLine log)
    : options_(std::move(options)), log_(std::move(log)) {
  std::vector<std::string> skipped;
  const auto sources = scan(&skipped);
  for (const auto& line : skipped) log_("skipped: " + line);
  const bool loading = options_.control != ModelControl::kExplicit;
  for (const auto& source : sources) {
    status_[source.name] = loading ? Status{kLoading, ""} : Status{kUnavailable, "not loaded"};
  }
}

ServedModels::~ServedModels() { stop_polling(); }

std::vector<ModelSource> ServedModels::scan(std::vector<std::string>* skipped) const {
  std::vector<std::string> ignored;
  return find_models(options_.path, skipped ? *skipped : ignored);
}

std::string ServedModels::load_at_start(const std::function<bool()>& stopped) {
  const auto sources = scan();
  std::vector<std::string> names;
  for (const auto& source : sources) {
    if (names.empty() || names.back() != source.name) names.push_back(source.name);
  }
  if (options_.control == ModelControl::kExplicit) {
    const auto& wanted = options_.load_at_start;
    if (std::find(wanted.begin(), wanted.end(), "*") == wanted.end()) {
      for (const auto& name : wanted) {
        if (std::find(names.begin(), names.end(), name) == names.end()) {
          throw OptionError("--load-model " + tsnative::quoted(name) + ": " + options_.path +
                            " holds no such model");
        }
      }
      names = wanted;
    }
  }
  for (const auto& name : names) {
    if (stopped()) break;
    load_now(name, named(sources, name));
  }
  std::string summary;
  for (const auto& entry : serving()) summary += (summary.empty() ? "" : ", ") + describe(*entry);
  return summary.empty() ? "no model loaded (load them with POST /v2/repository/models/NAME/load)"
                         : summary;
}

void ServedModels::refuse_unless_explicit() const {
  if (options_.control == ModelControl::kExplicit) return;
  throw ProtocolError(
      std::string("models are loaded and unloaded on request only with --model-control explicit ") +
          (options_.control == ModelControl::kPoll
               ? "(this server polls its repository: change the files instead)"
               : "(this server's is none: its models are fixed at start)"),
      400);
}

void ServedModels::refuse_parameters(const std::vector<std::string>& given,
                                     const std::vector<std::string>& accepted) {
  for (const auto& name : given) {
    if (std::find(accepted.begin(), accepted.end(), name) == accepted.end()) {
      throw ProtocolError("parameter " + tsnative::quoted(name) +
                          " is not supported: what is loaded is the repository's own files");
    }
  }
}

void ServedModels::load(const std::string& name, const std::vector<std::string>& parameters) {
  refuse_unless_explicit();
  refuse_parameters(parameters, {});
  std::vector<ModelSource> sources;
  try {
    sources = named(scan(), name);
  } catch (const OptionError& e) {
    throw ProtocolError("cannot read the repository: " + std::string(e.what()), 400);
  }
  if (sources.empty()) {
    throw ProtocolError(options_.path + " holds no model " + tsnative::quoted(name), 400);
  }
  const bool was_serving = !versions(name).empty();
  try {
    load_now(name, sources);
  } catch (const std::exception& e) {
    throw ProtocolError("failed to load " + tsnative::quoted(name) + ": " + e.what() +
                            (was_serving ? " (the versions loaded before still serve)" : ""),
                        400);
  }
}

void ServedModels::unload(const std::string& name, const std::vector<std::string>& parameters) {
  refuse_unless_explicit();
  refuse_parameters(parameters, {"unload_dependents"});
  {
    std::shared_lock lock(mutex_);
    if (!status_.count(name)) throw ProtocolError("unknown model " + tsnative::quoted(name), 404);
  }
  unload_now(name);
}

std::shared_ptr<const Entry> ServedModels::load_entry(const ModelSource& source) {
  auto config = options_.defaults;
  if (!source.config.empty()) config = read_model_config(source.config, config);
  auto entry = std::make_shared<Entry>();
  entry->source = source;
  {
    std::unique_lock lock(mutex_);
    auto& metrics = metrics_[source.name + "/" + source.version];
    if (!metrics) {
      metrics = std::make_shared<ModelMetrics>();
      metrics->model = source.name;
      metrics->version = source.version;
    }
    entry->metrics = metrics;
  }
  entry->model = std::make_unique<ServedModel>(source.name, source.version, source.path, config,
                                               options_.load);
  entry->batcher = std::make_unique<Batcher>(*entry->model, *entry->metrics);
  return entry;
}

void ServedModels::load_now(const std::string& name, const std::vector<ModelSource>& sources) {
  std::lock_guard<std::mutex> one_at_a_time(changing_);
  bool was_serving = false;
  {
    std::unique_lock lock(mutex_);
    was_serving = serving_.count(name) > 0;
    if (!was_serving) status_[name] = {kLoading, ""};
    signature_[name] = signature_of(sources);
  }
  std::vector<std::shared_ptr<const Entry>> loaded;
  try {
    for (const auto& source : sources) loaded.push_back(load_entry(source));
  } catch (const std::exception& e) {
    std::unique_lock lock(mutex_);
    status_[name] = was_serving ? Status{kReady, ""} : Status{kUnavailable, e.what()};
    throw;  // the caller says it: the response, the poller's log line, the exit message
  }
  std::vector<std::shared_ptr<const Entry>> replaced;
  {
    std::unique_lock lock(mutex_);
    auto& versions = serving_[name];
    replaced.swap(versions);
    versions = loaded;
    status_[name] = {kReady, ""};
  }
  std::string summary;
  for (const auto& entry : loaded) summary += (summary.empty() ? "" : ", ") + describe(*entry);
  log_((was_serving ? "reloaded: " : "loaded: ") + summary);
  // `replaced` goes here, outside the lock: each old version once its last request is done.
}

void ServedModels::unload_now(const std::string& name) {
  std::lock_guard<std::mutex> one_at_a_time(changing_);
  std::vector<std::shared_ptr<const Entry>> replaced;
  {
    std::unique_lock lock(mutex_);
    const auto found = serving_.find(name);
    if (found != serving_.end()) {
      replaced.swap(found->second);
      serving_.erase(found);
    }
    status_[name] = {kUnavailable, "unloaded"};
    signature_.erase(name);
  }
  log_("unloaded: " + name);
}

std::vector<IndexRow> ServedModels::index() const {
  std::vector<ModelSource> sources;
  try {
    sources = scan();
  } catch (const OptionError&) {  // nothing there now: what serves is still listed
  }
  std::shared_lock lock(mutex_);
  std::set<std::string> names;
  for (const auto& source : sources) names.insert(source.name);
  for (const auto& [name, status] : status_) names.insert(name);
  std::vector<IndexRow> rows;
  for (const auto& name : names) {
    const auto status = status_.count(name) ? status_.at(name) : Status{kUnavailable, "not loaded"};
    const auto serving = serving_.find(name);
    if (serving != serving_.end()) {
      for (const auto& entry : serving->second) {
        rows.push_back({name, entry->source.version, kReady, ""});
      }
      continue;
    }
    const auto found = named(sources, name);
    if (found.empty()) rows.push_back({name, "", status.state, status.reason});
    for (const auto& source : found) {
      rows.push_back({name, source.version, status.state, status.reason});
    }
  }
  return rows;
}

std::shared_ptr<const Entry> ServedModels::find_ready(const std::string& name,
                                                      const std::string& version) const {
  std::shared_lock lock(mutex_);
  const auto serving = serving_.find(name);
  if (serving == serving_.end()) {
    const auto status = status_.find(name);
    if (status == status_.end()) {
      throw ProtocolError("unknown model " + tsnative::quoted(name), 404);
    }
    if (status->second.state == kLoading) {
      throw ProtocolError("model " + tsnative::quoted(name) + " is not ready (loading)", 503);
    }
    throw ProtocolError(
        "model " + tsnative::quoted(name) + " is not loaded (" + status->second.reason + ")", 404);
  }
  const auto& versions = serving->second;
  if (version.empty()) return versions.back();
  for (const auto& entry : versions) {
    if (entry->source.version == version) return entry;
  }
  throw ProtocolError(
      "model " + tsnative::quoted(name) + " has no version " + tsnative::quoted(version), 404);
}

bool ServedModels::is_ready(const std::string& name, const std::string& version) const {
  try {
    find_ready(name, version);
    return true;
  } catch (const ProtocolError& e) {
    std::shared_lock lock(mutex_);
    if (!status_.count(name)) throw;  // a model the repository never held
    return false;
  }
}

std::vector<std::string> ServedModels::versions(const std::string& name) const {
  std::shared_lock lock(mutex_);
  std::vector<std::string> out;
  const auto serving = serving_.find(name);
  if (serving == serving_.end()) return out;
  for (const auto& entry : serving->second) out.push_back(entry->source.version);
  return out;
}

std::vector<std::shared_ptr<const Entry>> ServedModels::serving() const {
  std::shared_lock lock(mutex_);
  std::vector<std::shared_ptr<const Entry>> out;
  for (const auto& [name, versions] : serving_)
    out.insert(out.end(), versions.begin(), versions.end());
  return out;
}

InferAnswer ServedModels::infer(const Entry& entry, const InferRequest& request) const {
  const auto& model = *entry.model;
  auto outputs = entry.batcher->submit(model.arguments(request)).get();
  InferAnswer answer;
  answer.tensors = model.respond(request, outputs, answer.binary);
  return answer;
}

void ServedModels::start_polling() {
  if (options_.control != ModelControl::kPoll || poller_.joinable()) return;
  poller_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(polling_mutex_);
    while (!polling_stop_.wait_for(lock, std::chrono::seconds(options_.poll_seconds),
                                   [this] { return polling_stopped_; })) {
      lock.unlock();
      poll();
      lock.lock();
    }
  });
}

void ServedModels::stop_polling() {
  {
    std::lock_guard<std::mutex> lock(polling_mutex_);
    polling_stopped_ = true;
  }
  polling_stop_.notify_all();
  if (poller_.joinable()) poller_.join();
}

void ServedModels::poll() {
  std::vector<ModelSource> sources;
  try {
    sources = scan();
  } catch (const OptionError& e) {  // e.g. the last model removed: unload what served
    log_("polling the repository: " + std::string(e.what()));
  }
  std::set<std::string> found;
  for (const auto& source : sources) found.insert(source.name);
  for (const auto& name : found) {
    const auto versions = named(sources, name);
    {
      std::shared_lock lock(mutex_);
      const auto last = signature_.find(name);
      if (last != signature_.end() && last->second == signature_of(versions)) continue;
    }
    try {
      load_now(name, versions);
    } catch (const std::exception& e) {  // tried again once its files change
      log_("failed to load " + name + ": " + e.what() +
           (this->versions(name).empty() ? "" : " (the versions loaded before still serve)"));
    }
  }
  std::vector<std::string> removed;
  {
    std::shared_lock lock(mutex_);
    for (const auto& [name, versions] : serving_) {
      if (!found.count(name)) removed.push_back(name);
    }
  }
  for (const auto& name : removed) unload_now(name);
}

}  // namespace tsnative::server
