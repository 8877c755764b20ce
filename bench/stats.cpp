// coapgw-bench stats — histogram arithmetic and the process-to-parent text form (see stats.hpp).
#include "stats.hpp"

#include <bit>
#include <cstdio>
#include <sstream>
#include <string_view>
#include <utility>
#include <vector>

namespace coapgw::bench {

std::size_t LatencyHistogram::bucket_of(std::uint64_t micros) {
  if (micros < 32) return static_cast<std::size_t>(micros);
  const unsigned exponent = 63u - static_cast<unsigned>(std::countl_zero(micros));  // >= 5
  const std::size_t sub = static_cast<std::size_t>((micros >> (exponent - 4)) & 15u);
  const std::size_t bucket = 32 + (exponent - 5) * 16 + sub;
  return bucket < bucket_count ? bucket : bucket_count - 1;
}

std::uint64_t LatencyHistogram::upper_bound_of(std::size_t bucket) {
  if (bucket < 32) return bucket;
  const std::size_t exponent = (bucket - 32) / 16 + 5;
  const std::uint64_t sub = (bucket - 32) % 16;
  return ((16 + sub + 1) << (exponent - 4)) - 1;
}

void LatencyHistogram::record_us(std::uint64_t micros) {
  ++buckets_[bucket_of(micros)];
  ++count_;
  if (micros > max_us_) max_us_ = micros;
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  for (std::size_t i = 0; i < bucket_count; ++i) buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  if (other.max_us_ > max_us_) max_us_ = other.max_us_;
}

std::uint64_t LatencyHistogram::quantile_us(double q) const {
  if (count_ == 0) return 0;
  const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(count_) + 0.5);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < bucket_count; ++i) {
    seen += buckets_[i];
    if (seen >= rank && buckets_[i] != 0) {
      const auto bound = upper_bound_of(i);
      return bound < max_us_ ? bound : max_us_;
    }
  }
  return max_us_;
}

std::string LatencyHistogram::serialize() const {
  std::string out = std::to_string(max_us_);
  for (std::size_t i = 0; i < bucket_count; ++i) {
    if (buckets_[i] != 0) out += "," + std::to_string(i) + ":" + std::to_string(buckets_[i]);
  }
  return out;
}

bool LatencyHistogram::parse(const std::string& text) {
  *this = LatencyHistogram{};
  std::stringstream in(text);
  std::string item;
  if (!std::getline(in, item, ',')) return false;
  max_us_ = std::stoull(item);
  while (std::getline(in, item, ',')) {
    const auto colon = item.find(':');
    if (colon == std::string::npos) return false;
    const auto index = std::stoull(item.substr(0, colon));
    const auto n = std::stoull(item.substr(colon + 1));
    if (index >= bucket_count) return false;
    buckets_[index] += n;
    count_ += n;
  }
  return true;
}

namespace {

// One table of (name, member) keeps serialize, parse and merge in step.
using Counter = std::uint64_t RunStats::*;
const std::vector<std::pair<std::string_view, Counter>>& counters() {
  static const std::vector<std::pair<std::string_view, Counter>> table = {
      {"sent", &RunStats::requests_sent},   {"resp", &RunStats::responses},
      {"r2", &RunStats::responses_2xx},     {"r4", &RunStats::responses_4xx},
      {"r5", &RunStats::responses_5xx},     {"to", &RunStats::timeouts},
      {"err", &RunStats::errors},           {"hs", &RunStats::handshakes},
      {"hsf", &RunStats::handshake_failures}, {"open", &RunStats::sessions_opened},
      {"openf", &RunStats::open_failures},  {"ka", &RunStats::keepalives},
      {"kaf", &RunStats::keepalive_failures}, {"ver", &RunStats::verified},
      {"verf", &RunStats::verify_failures}, {"verfl", &RunStats::verify_failures_lost},
      {"cyc", &RunStats::cycles},
      {"rb", &RunStats::rebinds},           {"dl", &RunStats::downlinks_answered},
      {"rt", &RunStats::retries},           {"rs", &RunStats::resends},
  };
  return table;
}

}  // namespace

void RunStats::merge(const RunStats& other) {
  for (const auto& [name, member] : counters()) this->*member += other.*member;
  latency.merge(other.latency);
}

std::string RunStats::serialize() const {
  std::string out;
  for (const auto& [name, member] : counters()) {
    out += std::string(name) + "=" + std::to_string(this->*member) + " ";
  }
  out += "hist=" + latency.serialize();
  return out;
}

bool RunStats::parse(const std::string& line) {
  *this = RunStats{};
  std::stringstream in(line);
  std::string item;
  try {
    while (in >> item) {
      const auto eq = item.find('=');
      if (eq == std::string::npos) return false;
      const auto name = std::string_view(item).substr(0, eq);
      const auto value = item.substr(eq + 1);
      if (name == "hist") {
        if (!latency.parse(value)) return false;
        continue;
      }
      for (const auto& [counter_name, member] : counters()) {
        if (counter_name == name) this->*member = std::stoull(value);
      }
    }
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

}  // namespace coapgw::bench
