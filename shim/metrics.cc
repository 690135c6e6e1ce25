#include "shim/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <set>
#include <sstream>
#include <type_traits>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/util/check.h"
#include "shim/go_format.h"

namespace detcd::shim::metrics {
namespace {

// 2^53: below it every whole double converts to uint64 exactly.
constexpr double kMaxExactWhole = 9007199254740992.0;

// Prometheus' writeFloat: 0, 1 and -1 short-cut, the rest Go's %g.
std::string FormatValue(double v) {
  if (v == 0) return "0";  // also -0
  return GoFormatFloatG(v);
}

bool IsNameStart(char c, bool colon_ok) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         (colon_ok && c == ':');
}

bool ValidName(const std::string& s, bool colon_ok) {
  if (s.empty() || !IsNameStart(s[0], colon_ok)) return false;
  for (char c : s) {
    if (!IsNameStart(c, colon_ok) && !(c >= '0' && c <= '9')) return false;
  }
  return true;
}

// HELP text: \ and newline escaped; label values also escape ".
void AppendEscaped(std::string* out, std::string_view s, bool quote) {
  for (char c : s) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '\n') {
      out->append("\\n");
    } else if (quote && c == '"') {
      out->append("\\\"");
    } else {
      out->push_back(c);
    }
  }
}

void AppendHeader(std::string* out, const std::string& name,
                  const std::string& help, const char* type) {
  absl::StrAppend(out, "# HELP ", name, " ");
  AppendEscaped(out, help, false);
  absl::StrAppend(out, "\n# TYPE ", name, " ", type, "\n");
}

// One sample line: name{labels[,le="bound"]} value
void AppendSample(std::string* out, const std::string& name,
                  std::string_view suffix,
                  const std::vector<std::string>& label_names,
                  const std::vector<std::string>& label_values,
                  const std::string* le, double value) {
  out->append(name);
  out->append(suffix);
  if (!label_names.empty() || le != nullptr) {
    char sep = '{';
    for (size_t i = 0; i < label_names.size(); ++i) {
      out->push_back(sep);
      absl::StrAppend(out, label_names[i], "=\"");
      AppendEscaped(out, label_values[i], true);
      out->push_back('"');
      sep = ',';
    }
    if (le != nullptr) {
      out->push_back(sep);
      absl::StrAppend(out, "le=\"", *le, "\"");
    }
    out->push_back('}');
  }
  out->push_back(' ');
  out->append(FormatValue(value));
  out->push_back('\n');
}

template <class T>
constexpr const char* TypeName() {
  if constexpr (std::is_same_v<T, Counter>) {
    return "counter";
  } else if constexpr (std::is_same_v<T, Gauge>) {
    return "gauge";
  } else {
    return "histogram";
  }
}

void RenderChild(std::string* out, const std::string& name,
                 const std::vector<std::string>& names,
                 const std::vector<std::string>& values, const Counter& c) {
  AppendSample(out, name, "", names, values, nullptr, c.Value());
}

void RenderChild(std::string* out, const std::string& name,
                 const std::vector<std::string>& names,
                 const std::vector<std::string>& values, const Gauge& g) {
  AppendSample(out, name, "", names, values, nullptr, g.Value());
}

void RenderChild(std::string* out, const std::string& name,
                 const std::vector<std::string>& names,
                 const std::vector<std::string>& values, const Histogram& h) {
  // Counts and sum are separate atomics: a concurrent Observe may show in
  // one and not yet the other, which Prometheus tolerates. _count is the +Inf
  // bucket by construction, so those two always agree.
  double sum = h.Sum();
  std::vector<uint64_t> cumulative = h.CumulativeCounts();
  const std::vector<double>& bounds = h.upper_bounds();
  for (size_t i = 0; i < bounds.size(); ++i) {
    std::string le = FormatValue(bounds[i]);
    AppendSample(out, name, "_bucket", names, values, &le,
                 static_cast<double>(cumulative[i]));
  }
  const std::string inf = "+Inf";
  uint64_t count = cumulative.back();
  AppendSample(out, name, "_bucket", names, values, &inf,
               static_cast<double>(count));
  AppendSample(out, name, "_sum", names, values, nullptr, sum);
  AppendSample(out, name, "_count", names, values, nullptr,
               static_cast<double>(count));
}

// A value computed at scrape time.
class FuncCollector final : public internal::Collector {
 public:
  FuncCollector(std::string name, std::string help, const char* type,
                std::function<double()> f)
      : name_(std::move(name)),
        help_(std::move(help)),
        type_(type),
        f_(std::move(f)) {}

  void Render(std::string* out) const override {
    double v = f_();
    AppendHeader(out, name_, help_, type_);
    AppendSample(out, name_, "", {}, {}, nullptr, v);
  }

 private:
  const std::string name_;
  const std::string help_;
  const char* type_;
  const std::function<double()> f_;
};

// Labelled values computed at scrape time.
class FuncFamilyCollector final : public internal::Collector {
 public:
  FuncFamilyCollector(std::string name, std::string help, const char* type,
                      std::vector<std::string> labels,
                      std::function<Registry::LabelledValues()> f)
      : name_(std::move(name)),
        help_(std::move(help)),
        type_(type),
        f_(std::move(f)) {
    for (const std::string& l : labels) {
      DETCD_CHECK_MSG(ValidName(l, false) && l.rfind("__", 0) != 0,
                      ("invalid label name: " + l).c_str());
    }
    order_.resize(labels.size());
    std::iota(order_.begin(), order_.end(), size_t{0});
    std::sort(order_.begin(), order_.end(),
              [&](size_t a, size_t b) { return labels[a] < labels[b]; });
    for (size_t i : order_) sorted_labels_.push_back(labels[i]);
  }

  void Render(std::string* out) const override {
    std::map<std::vector<std::string>, double> children;
    for (const auto& [values, v] : f_()) {
      DETCD_CHECK_MSG(values.size() == order_.size(),
                      ("wrong number of label values for " + name_).c_str());
      std::vector<std::string> key;
      for (size_t i : order_) key.push_back(values[i]);
      children[std::move(key)] = v;
    }
    if (children.empty()) return;
    AppendHeader(out, name_, help_, type_);
    for (const auto& [values, v] : children) {
      AppendSample(out, name_, "", sorted_labels_, values, nullptr, v);
    }
  }

 private:
  const std::string name_;
  const std::string help_;
  const char* type_;
  std::vector<size_t> order_;
  std::vector<std::string> sorted_labels_;
  const std::function<Registry::LabelledValues()> f_;
};

}  // namespace

// ---- Counter / Gauge / Histogram ----

void Counter::Inc(double v) {
  DETCD_CHECK_MSG(v >= 0, "counter cannot decrease in value");
  if (v < kMaxExactWhole && v == std::floor(v)) {
    whole_.fetch_add(static_cast<uint64_t>(v), std::memory_order_relaxed);
  } else {
    fraction_.fetch_add(v, std::memory_order_relaxed);
  }
}

double Counter::Value() const {
  return static_cast<double>(whole_.load(std::memory_order_relaxed)) +
         fraction_.load(std::memory_order_relaxed);
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)) {
  if (bounds_.empty()) bounds_ = DefaultBuckets();
  if (std::isinf(bounds_.back()) && bounds_.back() > 0) bounds_.pop_back();
  for (size_t i = 0; i < bounds_.size(); ++i) {
    DETCD_CHECK_MSG(!std::isnan(bounds_[i]), "histogram bucket is NaN");
    DETCD_CHECK_MSG(i == 0 || bounds_[i - 1] < bounds_[i],
                    "histogram buckets must be in increasing order");
  }
  counts_ = std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1);
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::Observe(double v) {
  // First bound with v <= bound; NaN compares false everywhere and lands in
  // +Inf, as in the Go client.
  size_t i;
  if (bounds_.size() < 35) {
    i = 0;
    while (i < bounds_.size() && !(v <= bounds_[i])) ++i;
  } else {
    i = static_cast<size_t>(
        std::partition_point(bounds_.begin(), bounds_.end(),
                             [v](double b) { return !(v <= b); }) -
        bounds_.begin());
  }
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::CumulativeCounts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t acc = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    acc += counts_[i].load(std::memory_order_relaxed);
    out[i] = acc;
  }
  return out;
}

uint64_t Histogram::Count() const { return CumulativeCounts().back(); }

// ---- Family ----

template <class T>
Family<T>::Family(std::string name, std::string help,
                  std::vector<std::string> labels, std::vector<double> buckets)
    : name_(std::move(name)),
      help_(std::move(help)),
      buckets_(std::move(buckets)) {
  std::set<std::string> seen;
  for (const std::string& l : labels) {
    DETCD_CHECK_MSG(ValidName(l, false) && l.rfind("__", 0) != 0,
                    ("invalid label name: " + l).c_str());
    DETCD_CHECK_MSG(!(std::is_same_v<T, Histogram> && l == "le"),
                    "\"le\" is reserved for histogram buckets");
    DETCD_CHECK_MSG(seen.insert(l).second,
                    ("duplicate label name: " + l).c_str());
  }
  order_.resize(labels.size());
  std::iota(order_.begin(), order_.end(), size_t{0});
  std::sort(order_.begin(), order_.end(),
            [&](size_t a, size_t b) { return labels[a] < labels[b]; });
  for (size_t i : order_) sorted_labels_.push_back(labels[i]);
}

template <class T>
T& Family<T>::WithLabels(const std::vector<std::string>& values) {
  DETCD_CHECK_MSG(values.size() == order_.size(),
                  ("wrong number of label values for " + name_).c_str());
  std::vector<std::string> key;
  key.reserve(values.size());
  for (size_t i : order_) key.push_back(values[i]);
  absl::MutexLock lock(&mu_);
  std::unique_ptr<T>& child = children_[std::move(key)];
  if (child == nullptr) {
    if constexpr (std::is_same_v<T, Histogram>) {
      child = std::make_unique<Histogram>(buckets_);
    } else {
      child = std::make_unique<T>();
    }
  }
  return *child;
}

template <class T>
void Family<T>::Render(std::string* out) const {
  // Children are never removed, so the pointers outlive the lock.
  std::vector<std::pair<const std::vector<std::string>*, const T*>> children;
  {
    absl::MutexLock lock(&mu_);
    children.reserve(children_.size());
    for (const auto& [values, child] : children_) {
      children.emplace_back(&values, child.get());
    }
  }
  if (children.empty()) return;
  AppendHeader(out, name_, help_, TypeName<T>());
  for (const auto& [values, child] : children) {
    RenderChild(out, name_, sorted_labels_, *values, *child);
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// ---- Registry ----

void Registry::Add(const std::string& name,
                   std::unique_ptr<internal::Collector> c) {
  DETCD_CHECK_MSG(ValidName(name, true),
                  ("invalid metric name: " + name).c_str());
  absl::MutexLock lock(&mu_);
  bool inserted = entries_.emplace(name, std::move(c)).second;
  DETCD_CHECK_MSG(inserted, ("duplicate metric name: " + name).c_str());
}

template <class T>
Family<T>& Registry::AddFamily(std::string name, std::string help,
                               std::vector<std::string> labels,
                               std::vector<double> buckets) {
  auto family = std::make_unique<Family<T>>(
      name, std::move(help), std::move(labels), std::move(buckets));
  Family<T>& ref = *family;
  Add(name, std::move(family));
  return ref;
}

Counter& Registry::NewCounter(std::string name, std::string help) {
  return AddFamily<Counter>(std::move(name), std::move(help), {}, {})
      .WithLabels({});
}

Gauge& Registry::NewGauge(std::string name, std::string help) {
  return AddFamily<Gauge>(std::move(name), std::move(help), {}, {})
      .WithLabels({});
}

Histogram& Registry::NewHistogram(std::string name, std::string help,
                                  std::vector<double> buckets) {
  return AddFamily<Histogram>(std::move(name), std::move(help), {},
                              std::move(buckets))
      .WithLabels({});
}

Family<Counter>& Registry::NewCounterFamily(std::string name, std::string help,
                                            std::vector<std::string> labels) {
  return AddFamily<Counter>(std::move(name), std::move(help), std::move(labels),
                            {});
}

Family<Gauge>& Registry::NewGaugeFamily(std::string name, std::string help,
                                        std::vector<std::string> labels) {
  return AddFamily<Gauge>(std::move(name), std::move(help), std::move(labels),
                          {});
}

Family<Histogram>& Registry::NewHistogramFamily(std::string name,
                                                std::string help,
                                                std::vector<std::string> labels,
                                                std::vector<double> buckets) {
  return AddFamily<Histogram>(std::move(name), std::move(help),
                              std::move(labels), std::move(buckets));
}

void Registry::NewGaugeFunc(std::string name, std::string help,
                            std::function<double()> f) {
  std::string key = name;
  Add(key, std::make_unique<FuncCollector>(std::move(name), std::move(help),
                                           "gauge", std::move(f)));
}

void Registry::NewCounterFunc(std::string name, std::string help,
                              std::function<double()> f) {
  std::string key = name;
  Add(key, std::make_unique<FuncCollector>(std::move(name), std::move(help),
                                           "counter", std::move(f)));
}

void Registry::NewGaugeFuncFamily(std::string name, std::string help,
                                  std::vector<std::string> labels,
                                  std::function<LabelledValues()> f) {
  std::string key = name;
  Add(key, std::make_unique<FuncFamilyCollector>(
               std::move(name), std::move(help), "gauge", std::move(labels),
               std::move(f)));
}

void Registry::NewCounterFuncFamily(std::string name, std::string help,
                                    std::vector<std::string> labels,
                                    std::function<LabelledValues()> f) {
  std::string key = name;
  Add(key, std::make_unique<FuncFamilyCollector>(
               std::move(name), std::move(help), "counter", std::move(labels),
               std::move(f)));
}

std::string Registry::Render() const {
  // Snapshot the entries and render without the registry lock, so a scrape
  // function may itself use the registry.
  std::vector<const internal::Collector*> entries;
  {
    absl::MutexLock lock(&mu_);
    entries.reserve(entries_.size());
    for (const auto& [name, c] : entries_) entries.push_back(c.get());
  }
  std::string out;
  for (const internal::Collector* c : entries) c->Render(&out);
  return out;
}

Registry& DefaultRegistry() {
  static Registry* const r = new Registry();
  return *r;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  DETCD_CHECK_MSG(count >= 1, "ExponentialBuckets needs a positive count");
  DETCD_CHECK_MSG(start > 0, "ExponentialBuckets needs a positive start");
  DETCD_CHECK_MSG(factor > 1, "ExponentialBuckets needs a factor above 1");
  std::vector<double> out;
  out.reserve(static_cast<size_t>(count));
  // Repeated multiplication, as the Go client does, so bounds print the same.
  double next = start;
  for (int i = 0; i < count; ++i) {
    out.push_back(next);
    next *= factor;
  }
  return out;
}

std::vector<double> LinearBuckets(double start, double width, int count) {
  DETCD_CHECK_MSG(count >= 1, "LinearBuckets needs a positive count");
  std::vector<double> out;
  out.reserve(static_cast<size_t>(count));
  double next = start;
  for (int i = 0; i < count; ++i) {
    out.push_back(next);
    next += width;
  }
  return out;
}

std::vector<double> DefaultBuckets() {
  return {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};
}

// ---- process_* ----

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string ReadFile(const char* path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Fields of /proc/self/stat after the command name, so index 0 is field 3
// ("state") of proc(5). Empty on failure.
std::vector<std::string> SelfStatFields() {
  std::string stat = ReadFile("/proc/self/stat");
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return {};
  return absl::StrSplit(stat.substr(close + 1), ' ', absl::SkipWhitespace());
}

// proc(5) field number -> value, NaN if missing.
double StatField(const std::vector<std::string>& f, size_t field) {
  size_t i = field - 3;
  if (i >= f.size()) return kNaN;
  return std::strtod(f[i].c_str(), nullptr);
}

double ClockTicks() { return static_cast<double>(sysconf(_SC_CLK_TCK)); }

double BootTimeSeconds() {
  std::string stat = ReadFile("/proc/stat");
  for (absl::string_view line : absl::StrSplit(stat, '\n')) {
    if (absl::StartsWith(line, "btime ")) {
      return std::strtod(std::string(line.substr(6)).c_str(), nullptr);
    }
  }
  return kNaN;
}

double SoftLimit(int resource) {
  struct rlimit rl;
  if (getrlimit(resource, &rl) != 0) return kNaN;
  // RLIM_INFINITY is the largest uint64, which the Go client prints too.
  return static_cast<double>(rl.rlim_cur);
}

double OpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return kNaN;
  int n = 0;
  while (struct dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n;
}

}  // namespace

void RegisterProcessMetrics(Registry& r) {
  // Help texts are the Go client's process collector's, so etcd dashboards
  // show the same descriptions.
  r.NewCounterFunc("process_cpu_seconds_total",
                   "Total user and system CPU time spent in seconds.", [] {
                     std::vector<std::string> f = SelfStatFields();
                     return (StatField(f, 14) + StatField(f, 15)) /
                            ClockTicks();
                   });
  r.NewGaugeFunc("process_open_fds", "Number of open file descriptors.",
                 [] { return OpenFds(); });
  r.NewGaugeFunc("process_max_fds", "Maximum number of open file descriptors.",
                 [] { return SoftLimit(RLIMIT_NOFILE); });
  r.NewGaugeFunc("process_virtual_memory_bytes",
                 "Virtual memory size in bytes.",
                 [] { return StatField(SelfStatFields(), 23); });
  r.NewGaugeFunc("process_virtual_memory_max_bytes",
                 "Maximum amount of virtual memory available in bytes.",
                 [] { return SoftLimit(RLIMIT_AS); });
  r.NewGaugeFunc("process_resident_memory_bytes",
                 "Resident memory size in bytes.", [] {
                   return StatField(SelfStatFields(), 24) *
                          static_cast<double>(sysconf(_SC_PAGESIZE));
                 });
  r.NewGaugeFunc("process_start_time_seconds",
                 "Start time of the process since unix epoch in seconds.", [] {
                   return BootTimeSeconds() +
                          StatField(SelfStatFields(), 22) / ClockTicks();
                 });
}

void RegisterOsFdMetrics(Registry& r) {
  // etcd's help texts (pkg/runtime through etcdserver/metrics.go).
  r.NewGaugeFunc("os_fd_used", "The number of used file descriptors.",
                 [] { return OpenFds(); });
  r.NewGaugeFunc("os_fd_limit", "The file descriptor limit.",
                 [] { return SoftLimit(RLIMIT_NOFILE); });
}

}  // namespace detcd::shim::metrics
