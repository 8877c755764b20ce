// coapgw-bench stats — what one load process counts, and how processes add their counts up.
//
// A LatencyHistogram is log-linear (16 sub-buckets per power of two, ~6% resolution) over
// microseconds, fixed-size, so recording never allocates. RunStats travels from each worker
// process to the parent as one text line (serialize/parse) and is merged there.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace coapgw::bench {

class LatencyHistogram {
 public:
  static constexpr std::size_t bucket_count = 32 + 36 * 16;

  void record_us(std::uint64_t micros);
  void merge(const LatencyHistogram& other);
  std::uint64_t count() const { return count_; }
  std::uint64_t max_us() const { return max_us_; }
  // Upper bound of the bucket holding the q-quantile (0 < q <= 1); 0 when empty.
  std::uint64_t quantile_us(double q) const;

  std::string serialize() const;               // "idx:count,..." sparse
  bool parse(const std::string& text);

 private:
  static std::size_t bucket_of(std::uint64_t micros);
  static std::uint64_t upper_bound_of(std::size_t bucket);

  std::array<std::uint64_t, bucket_count> buckets_{};
  std::uint64_t count_ = 0;
  std::uint64_t max_us_ = 0;
};

struct RunStats {
  std::uint64_t requests_sent = 0;
  std::uint64_t responses = 0;        // any response matched to a request in the window
  std::uint64_t responses_2xx = 0;
  std::uint64_t responses_4xx = 0;
  std::uint64_t responses_5xx = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t errors = 0;           // send failures, RST, DTLS errors, unparsable answers
  std::uint64_t handshakes = 0;       // DTLS handshakes completed
  std::uint64_t handshake_failures = 0;
  std::uint64_t sessions_opened = 0;  // setup: sessions that answered their first exchange
  std::uint64_t open_failures = 0;    // setup: devices that gave up (with retries: at the set-up deadline)
  std::uint64_t retries = 0;          // setup: attempts begun again after a back-off (new ClientHello)
  std::uint64_t resends = 0;          // first and verify GETs asked again on their session (--setup-deadline)
  std::uint64_t keepalives = 0;       // hold: keep-alive requests answered
  std::uint64_t keepalive_failures = 0;
  std::uint64_t verified = 0;         // hold: sessions that answered at the end
  std::uint64_t verify_failures = 0;
  std::uint64_t verify_failures_lost = 0;  // of them: the device's channel had dropped records or sends
  std::uint64_t rebinds = 0;          // --rebind: devices moved to a new source port
  std::uint64_t cycles = 0;           // handshake mode: handshake + request + close completed
  std::uint64_t downlinks_answered = 0;  // --serve: requests from the gateway answered
  LatencyHistogram latency;           // requests (handshake mode: whole cycle)

  void merge(const RunStats& other);
  std::string serialize() const;      // one line, no newline
  bool parse(const std::string& line);
};

}  // namespace coapgw::bench
