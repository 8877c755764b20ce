// coapgw-bench load worker — one process's devices, driven by one epoll loop.
//
// The worker owns its slice of devices (sockets, DTLS channels, outstanding requests) and runs
// the selected mode in phases: setup (open sessions), then after the parent's go, the measured
// phase (requests / handshake cycles / hold + verify). It tells the parent "READY" after setup
// and its RunStats at the end, one line each on `report_fd`, so the parent can sample the
// server exactly around the measured window.
#pragma once

#include <cstdint>

#include "options.hpp"

namespace coapgw::bench {

struct WorkerPlan {
  std::uint32_t index = 0;       // process number
  std::uint32_t first_slot = 0;  // first device slot (source address/port) of this process
  std::uint32_t slot_count = 0;  // slots owned; handshake mode rotates through all of them
  std::uint32_t devices = 0;     // sessions (or handshake slots) of this process
  double rate = 0;               // this process's share of --rate
  double open_rate = 0;          // this process's share of --open-rate
};

// Runs to completion; returns the process exit code.
int run_worker(const Options& options, const WorkerPlan& plan, int report_fd, int go_fd);

}  // namespace coapgw::bench
