// coapgw-bench server probe — /proc/PID/stat and /proc/PID/status parsing (see server_probe.hpp).
#include "server_probe.hpp"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace coapgw::bench {

std::optional<ServerSample> sample_server(int pid) {
  const std::string base = "/proc/" + std::to_string(pid);
  std::ifstream stat(base + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return std::nullopt;
  // The command name may hold spaces and parentheses; fields restart after the last ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(line.substr(close + 2));
  std::string field;
  unsigned long utime = 0, stime = 0;
  // After ')': field 3 is state; utime and stime are fields 14 and 15.
  for (int index = 3; index <= 15 && fields >> field; ++index) {
    if (index == 14) utime = std::stoul(field);
    if (index == 15) stime = std::stoul(field);
  }
  ServerSample sample;
  sample.cpu_seconds = static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  std::ifstream status(base + "/status");
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      sample.rss_kb = std::stol(line.substr(6));
      break;
    }
  }
  return sample;
}

}  // namespace coapgw::bench
