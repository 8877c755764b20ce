// coapgw-bench server probe — the measured server's CPU time and resident memory, from /proc.
//
// The figure of merit on a small machine is the server's own CPU per request, not throughput
// (the load tool caps that), so the parent samples utime+stime and VmRSS around each window.
#pragma once

#include <optional>

namespace coapgw::bench {

struct ServerSample {
  double cpu_seconds = 0;  // utime + stime of every thread of the process
  long rss_kb = 0;         // VmRSS
};

// nullopt when the process is gone or /proc cannot be read.
std::optional<ServerSample> sample_server(int pid);

}  // namespace coapgw::bench
