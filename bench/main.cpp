// coapgw-bench — CoAP / CoAP-over-DTLS load generator for coapgwd and libcoap's coap-server.
//
// main owns the process layout: it raises the file limit, splits the devices over --procs worker
// processes (more when one process cannot hold enough sockets), lines the workers up so that
// every measured window starts only after all sessions are open, samples the server's CPU and
// memory around that window, and prints the merged figures with a final `RESULT k=v ...` line.
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "load_worker.hpp"
#include "options.hpp"
#include "server_probe.hpp"
#include "stats.hpp"

namespace {

using namespace coapgw::bench;

// Slots handshake mode rotates through, so a port comes back only after many other sessions.
constexpr std::uint32_t handshake_slot_space = 4 * devices_per_address;
constexpr std::uint32_t reserved_fds = 64;  // epoll, pipes, stdio, OpenSSL

double now_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

struct Child {
  pid_t pid = -1;
  int report_fd = -1;  // child -> parent lines
  int go_fd = -1;      // parent -> child go byte
  std::string buffer;
  std::vector<std::string> lines;
};

std::uint64_t raise_file_limit() {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
  getrlimit(RLIMIT_NOFILE, &limit);
  return limit.rlim_cur;
}

// Waits until every child has sent `count` lines or the deadline passes; false on a dead child.
bool collect_lines(std::vector<Child>& children, std::size_t count, double deadline) {
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<Child*> owners;
    for (auto& child : children) {
      if (child.lines.size() < count) {
        fds.push_back({child.report_fd, POLLIN, 0});
        owners.push_back(&child);
      }
    }
    if (fds.empty()) return true;
    const double left = deadline - now_seconds();
    if (left <= 0) return false;
    const int rc = poll(fds.data(), fds.size(), static_cast<int>(std::min(left, 1.0) * 1000) + 1);
    if (rc < 0) continue;
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      char chunk[65536];
      const ssize_t n = read(fds[i].fd, chunk, sizeof chunk);
      if (n <= 0) return false;  // the worker died before reporting
      Child& child = *owners[i];
      child.buffer.append(chunk, static_cast<std::size_t>(n));
      for (auto eol = child.buffer.find('\n'); eol != std::string::npos; eol = child.buffer.find('\n')) {
        child.lines.push_back(child.buffer.substr(0, eol));
        child.buffer.erase(0, eol + 1);
      }
    }
  }
}

std::uint64_t field_of(const std::string& line, const std::string& key) {
  const auto at = line.find(key + "=");
  return at == std::string::npos ? 0 : std::stoull(line.substr(at + key.size() + 1));
}

void sleep_until(double deadline) {
  for (double left = deadline - now_seconds(); left > 0; left = deadline - now_seconds()) {
    timespec ts{static_cast<time_t>(left), static_cast<long>((left - std::floor(left)) * 1e9)};
    nanosleep(&ts, nullptr);
  }
}

std::string fixed(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  std::string error;
  auto parsed = parse_options(argc, argv, error);
  if (!parsed) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return error == usage() ? 0 : 1;
  }
  Options options = *parsed;
  std::signal(SIGPIPE, SIG_IGN);

  const std::uint64_t file_limit = raise_file_limit();
  const std::uint64_t per_process = file_limit > reserved_fds * 2 ? file_limit - reserved_fds : reserved_fds;
  const auto needed = static_cast<std::uint32_t>((options.devices + per_process - 1) / per_process);
  if (needed > options.procs) {
    std::fprintf(stderr, "coapgw-bench: file limit %llu per process: using %u processes\n",
                 static_cast<unsigned long long>(file_limit), needed);
    options.procs = needed;
  }
  if (options.procs > max_procs) {
    std::fprintf(stderr, "coapgw-bench: too many devices for %u processes\n", max_procs);
    return 1;
  }
  options.procs = std::min(options.procs, options.devices);

  // Split devices (and, for handshake mode, the rotating slot space) over the processes.
  std::vector<WorkerPlan> plans;
  std::uint32_t first_slot = 0;
  for (std::uint32_t p = 0; p < options.procs; ++p) {
    WorkerPlan plan;
    plan.index = p;
    plan.devices = options.devices / options.procs + (p < options.devices % options.procs ? 1 : 0);
    plan.slot_count = options.mode == Mode::handshake
                          ? std::max(plan.devices, handshake_slot_space / options.procs)
                          : plan.devices;
    plan.first_slot = first_slot;
    first_slot += plan.slot_count;
    plan.rate = options.rate / options.procs;
    plan.open_rate = options.open_rate / options.procs;
    plans.push_back(plan);
  }

  // Plain values rather than optionals: GCC 12 misreads optional<struct> as maybe-uninitialized.
  const bool probing = options.server_pid > 0;
  bool probe_ok = probing;
  auto probe = [&](ServerSample& out) {
    if (!probing) return;
    if (const auto sample = sample_server(options.server_pid)) out = *sample;
    else probe_ok = false;
  };
  ServerSample before, after_open, after;
  probe(before);
  if (probing && !probe_ok) {
    std::fprintf(stderr, "coapgw-bench: cannot read /proc/%d\n", options.server_pid);
    return 1;
  }

  const double setup_start = now_seconds();
  std::vector<Child> children(options.procs);
  for (std::uint32_t p = 0; p < options.procs; ++p) {
    int report[2], go[2];
    if (pipe2(report, O_CLOEXEC) != 0 || pipe2(go, O_CLOEXEC) != 0) {
      std::perror("pipe");
      return 2;
    }
    std::fflush(nullptr);
    const pid_t pid = fork();
    if (pid < 0) {
      std::perror("fork");
      return 2;
    }
    if (pid == 0) {
      close(report[0]);
      close(go[1]);
      for (std::uint32_t q = 0; q < p; ++q) {
        close(children[q].report_fd);
        close(children[q].go_fd);
      }
      _exit(run_worker(options, plans[p], report[1], go[0]));
    }
    close(report[1]);
    close(go[0]);
    children[p] = Child{pid, report[0], go[1], {}, {}};
  }

  int exit_code = 0;
  const double setup_bound = (options.setup_deadline > 0
                                  ? options.setup_deadline
                                  : static_cast<double>(options.devices) / options.open_rate +
                                        options.handshake_timeout) +
                             options.timeout + 90.0;
  if (!collect_lines(children, 1, now_seconds() + setup_bound)) {
    std::fprintf(stderr, "coapgw-bench: a worker failed during setup\n");
    exit_code = 2;
  }
  std::uint64_t opened = 0, setup_failed = 0;
  for (const auto& child : children) {
    if (child.lines.empty()) continue;
    opened += field_of(child.lines[0], "opened");
    setup_failed += field_of(child.lines[0], "failed");
  }
  probe(after_open);
  if (options.mode != Mode::handshake) {
    // The set-up ends when the last process is done with it (all opened, or its deadline).
    const double setup_s = now_seconds() - setup_start;
    std::fprintf(stderr, "setup: %llu sessions opened, %llu failed in %.1f s (%.0f/s)\n",
                 static_cast<unsigned long long>(opened), static_cast<unsigned long long>(setup_failed), setup_s,
                 setup_s > 0 ? static_cast<double>(opened) / setup_s : 0.0);
  }
  if (options.mode == Mode::hold) {
    std::printf("HOLD_READY sessions=%llu\n", static_cast<unsigned long long>(opened));
    std::fflush(stdout);
  }

  const double go_time = now_seconds();
  for (auto& child : children) {
    if (write(child.go_fd, "g", 1) != 1) exit_code = 2;
  }
  double window = options.duration;
  if (options.mode != Mode::hold) {
    sleep_until(go_time + options.duration);
    probe(after);
  }
  const double finish_bound = options.duration + static_cast<double>(options.devices) / options.open_rate +
                              options.timeout * (options.setup_deadline > 0 ? 3 : 1) + 90.0;  // verify asks again
  if (!collect_lines(children, 2, go_time + finish_bound)) {
    std::fprintf(stderr, "coapgw-bench: a worker failed during the run\n");
    exit_code = 2;
  }
  if (options.mode == Mode::hold) {
    window = now_seconds() - go_time;
    probe(after);
  }
  RunStats total;
  for (auto& child : children) {
    close(child.go_fd);
    if (child.lines.size() >= 2 && child.lines[1].rfind("STATS ", 0) == 0) {
      RunStats part;
      if (part.parse(child.lines[1].substr(6))) total.merge(part);
      else exit_code = 2;
    }
  }
  for (auto& child : children) {
    if (exit_code != 0) kill(child.pid, SIGTERM);
    int status = 0;
    waitpid(child.pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) exit_code = 2;
    close(child.report_fd);
  }

  // ---- figures -------------------------------------------------------------------------------
  const auto& latency = total.latency;
  const double rps = static_cast<double>(total.responses) / window;
  const double cycles_per_s = static_cast<double>(total.cycles) / window;
  std::string result = std::string("RESULT mode=") + mode_name(options.mode) +
                       " proto=" + (options.cid ? "dtls_cid" : options.dtls ? "dtls" : "plain") +
                       " devices=" + std::to_string(options.devices) +
                       " procs=" + std::to_string(options.procs) +
                       " window_s=" + fixed(window, 2);
  auto add = [&](const std::string& key, const std::string& value) { result += " " + key + "=" + value; };
  auto add_count = [&](const std::string& key, std::uint64_t value) { add(key, std::to_string(value)); };
  add_count("sent", total.requests_sent);
  add_count("responses", total.responses);
  add("rps", fixed(rps, 0));
  add_count("r2xx", total.responses_2xx);
  add_count("r4xx", total.responses_4xx);
  add_count("r5xx", total.responses_5xx);
  add_count("p50_us", latency.quantile_us(0.50));
  add_count("p99_us", latency.quantile_us(0.99));
  add_count("max_us", latency.max_us());
  add_count("timeouts", total.timeouts);
  add_count("errors", total.errors);
  add_count("handshakes", total.handshakes);
  add_count("handshake_failures", total.handshake_failures);
  add_count("cycles", total.cycles);
  add_count("downlinks_answered", total.downlinks_answered);
  add("hs_per_s", fixed(cycles_per_s, 0));
  add_count("opened", total.sessions_opened);
  add_count("open_failures", total.open_failures);
  add_count("gave_up", setup_failed);  // not open at the end of set-up (with retries: at the deadline)
  add_count("retries", total.retries);
  add_count("resends", total.resends);
  add_count("verify_failures_lost", total.verify_failures_lost);
  add_count("keepalives", total.keepalives);
  add_count("keepalive_failures", total.keepalive_failures);
  add_count("verified", total.verified);
  add_count("verify_failures", total.verify_failures);
  if (options.cid) add_count("rebinds", total.rebinds);
  std::fprintf(stderr, "%s: %s, %u devices in %u process(es), %.2f s\n", mode_name(options.mode),
               options.dtls ? "dtls" : "plain", options.devices, options.procs, window);
  std::fprintf(stderr, "  requests: %llu answered (%.0f/s; 2xx %llu 4xx %llu 5xx %llu), %llu timeouts, %llu errors\n",
               static_cast<unsigned long long>(total.responses), rps,
               static_cast<unsigned long long>(total.responses_2xx),
               static_cast<unsigned long long>(total.responses_4xx),
               static_cast<unsigned long long>(total.responses_5xx),
               static_cast<unsigned long long>(total.timeouts), static_cast<unsigned long long>(total.errors));
  std::fprintf(stderr, "  latency us: p50 %llu  p99 %llu  max %llu\n",
               static_cast<unsigned long long>(latency.quantile_us(0.5)),
               static_cast<unsigned long long>(latency.quantile_us(0.99)),
               static_cast<unsigned long long>(latency.max_us()));
  std::fprintf(stderr, "  handshakes: %llu ok, %llu failed; cycles %llu (%.0f/s)\n",
               static_cast<unsigned long long>(total.handshakes),
               static_cast<unsigned long long>(total.handshake_failures),
               static_cast<unsigned long long>(total.cycles), cycles_per_s);
  if (options.setup_deadline > 0) {
    std::fprintf(stderr, "  set-up: %llu established, %llu gave up; %llu new ClientHellos after a back-off, %llu GETs asked again\n",
                 static_cast<unsigned long long>(total.sessions_opened),
                 static_cast<unsigned long long>(setup_failed), static_cast<unsigned long long>(total.retries),
                 static_cast<unsigned long long>(total.resends));
  }
  if (options.mode == Mode::hold) {
    std::fprintf(stderr, "  hold: %llu opened, keep-alives %llu ok %llu failed, verified %llu of %llu (%llu failed)\n",
                 static_cast<unsigned long long>(total.sessions_opened),
                 static_cast<unsigned long long>(total.keepalives),
                 static_cast<unsigned long long>(total.keepalive_failures),
                 static_cast<unsigned long long>(total.verified),
                 static_cast<unsigned long long>(total.sessions_opened),
                 static_cast<unsigned long long>(total.verify_failures));
  }
  if (probe_ok) {
    const double cpu = after.cpu_seconds - after_open.cpu_seconds;
    // Work done in the window: requests, handshake cycles, or hold keep-alives + verifications.
    const std::uint64_t work = options.mode == Mode::requests    ? total.responses
                               : options.mode == Mode::handshake ? total.cycles
                                                                 : total.keepalives + total.verified;
    const std::uint64_t sessions = total.sessions_opened > 0 ? total.sessions_opened : options.devices;
    const long grown_kb = (total.sessions_opened > 0 ? after_open.rss_kb : after.rss_kb) - before.rss_kb;
    const double per_session = static_cast<double>(grown_kb) * 1024.0 / static_cast<double>(sessions);
    add("server_cpu_s", fixed(cpu, 2));
    add("server_cpu_pct", fixed(cpu / window * 100, 1));
    add("cpu_us_per_req", options.mode == Mode::handshake || work == 0 ? "-" : fixed(cpu * 1e6 / static_cast<double>(work), 2));
    add("cpu_us_per_hs", options.mode == Mode::handshake && total.cycles > 0 ? fixed(cpu * 1e6 / static_cast<double>(total.cycles), 1) : "-");
    add_count("rss_before_kb", static_cast<std::uint64_t>(before.rss_kb));
    add_count("rss_open_kb", static_cast<std::uint64_t>(after_open.rss_kb));
    add_count("rss_after_kb", static_cast<std::uint64_t>(after.rss_kb));
    add("rss_per_session_b", fixed(per_session, 0));
    std::fprintf(stderr, "  server: %.2f s CPU (%.1f%% of one core), RSS %ld -> %ld -> %ld kB, %.0f B per session\n",
                 cpu, cpu / window * 100, before.rss_kb, after_open.rss_kb, after.rss_kb, per_session);
  }
  std::printf("%s\n", result.c_str());
  return exit_code;
}
