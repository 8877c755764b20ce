// coapgwd — options, configuration, signals and systemd notification around server::Process.
// Exit codes: 0 clean stop, 1 bad configuration or usage, 2 runtime failure.
#include <signal.h>

#include <cstdio>
#include <iostream>
#include <atomic>
#include <memory>
#include <thread>
#include <string>
#include <variant>

#include "common/log.hpp"
#include "config/cli.hpp"
#include "config/config.hpp"
#include "dtls/crypto_heap.hpp"
#include "server/process.hpp"
#include "server/notify.hpp"
#include "server/snapshot.hpp"

namespace {

using namespace coapgw;

void print_config_error(const config::ConfigError& e) {
  for (auto& issue : e.issues)
    std::fprintf(stderr, "config error: %s%s%s\n", issue.key_path.c_str(), issue.key_path.empty() ? "" : ": ",
                 issue.message.c_str());
  if (e.issues.empty()) std::fprintf(stderr, "config error: %s\n", e.what());
}

std::shared_ptr<const config::Config> load(const config::CommandLine& cli) {
  auto c = std::make_shared<config::Config>(config::load_config_file(cli.config_path));
  config::apply_overrides(*c, cli);
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  // OpenSSL's allocations (handshake state) on a heap of their own, before OpenSSL allocates
  // anything: after a storm of handshakes their pages go back to the system (dtls/crypto_heap.hpp).
  dtls::install_crypto_heap();
  // Signals are taken synchronously by the main thread; every thread started later inherits the
  // mask. Blocked first thing, so a SIGTERM that arrives while the config loads still ends in a
  // clean exit 0 instead of the default action.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto parsed = config::parse_command_line(argc, argv);
  if (auto* err = std::get_if<config::CliError>(&parsed)) {
    std::fprintf(stderr, "coapgwd: %s (see --help)\n", err->message.c_str());
    return 1;
  }
  auto cli = std::get<config::CommandLine>(parsed);
  if (cli.help) {
    std::cout << "Usage: coapgwd --config FILE [options]\n" << cli.help_text;
    return 0;
  }
  if (cli.version) {
    std::cout << "coapgwd " COAPGW_VERSION "\n";
    return 0;
  }

  // One validation for --check-config and start-up (server::prepare): the file, and everything
  // built from it (keys, certificates and CA, cipher list, routes). A config that passes here starts.
  std::shared_ptr<const config::Config> cfg;
  std::shared_ptr<const server::Snapshot> snapshot;
  try {
    cfg = load(cli);
    snapshot = server::prepare(cfg);
  } catch (const config::ConfigError& e) {
    print_config_error(e);
    return 1;
  }
  if (cli.check_config) {
    std::printf("%s: OK\n", cli.config_path.c_str());
    return 0;
  }
  log::configure(cfg->log.level, cfg->log.format);

  auto gateway = std::make_unique<server::Process>(std::move(snapshot));
  cfg.reset();  // the gateway holds the configuration now; a reload must be able to free it (keys)
  std::string error;
  if (!gateway->start(&error)) {
    log::error("cannot start: " + error);
    std::fprintf(stderr, "coapgwd: %s\n", error.c_str());
    return 2;
  }
  server::notify::send("READY=1\nSTATUS=serving");

  auto watchdog = server::notify::watchdog_interval();
  timespec wait{};
  wait.tv_sec = 0;
  wait.tv_nsec = 500 * 1000 * 1000;
  if (watchdog) {
    auto half = *watchdog / 2;
    auto ns = std::min<std::int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(half).count(), 500000000);
    wait.tv_nsec = static_cast<long>(ns);
  }
  bool stopping = false;
  while (!stopping) {
    int sig = sigtimedwait(&signals, nullptr, &wait);
    // The watchdog keep-alive comes from the workers' own heartbeats: a stuck worker stops it.
    if (watchdog && gateway->workers_alive()) server::notify::send("WATCHDOG=1");
    if (sig == SIGHUP) {
      server::notify::send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(server::notify::monotonic_usec()));
      try {
        auto next = load(cli);
        if (!gateway->reload(next, &error))
          log::error("reload refused, keeping the running configuration: " + error);
        else log::configure(next->log.level, next->log.format);
      } catch (const config::ConfigError& e) {
        gateway->count_failed_reload();
        std::string reasons;
        for (auto& issue : e.issues) reasons += " " + issue.key_path + ": " + issue.message + ";";
        log::error("reload refused, keeping the running configuration:" + reasons);
      }
      server::notify::send("READY=1");
    } else if (sig == SIGTERM || sig == SIGINT) {
      stopping = true;
    }
  }
  server::notify::send("STOPPING=1");
  log::info("shutting down: draining");
  // A second SIGTERM/SIGINT during the drain stops at once. This thread also keeps the watchdog
  // fed while the workers drain.
  std::atomic<bool> drained{false};
  std::thread second([signals, watchdog, &drained, &gateway] {
    timespec t{0, 200 * 1000 * 1000};
    while (!drained.load()) {
      int sig = sigtimedwait(&signals, nullptr, &t);
      if (sig == SIGTERM || sig == SIGINT) {
        std::fprintf(stderr, "coapgwd: second signal, exiting now\n");
        std::_Exit(0);
      }
      if (watchdog && gateway->workers_alive()) server::notify::send("WATCHDOG=1");
    }
  });
  gateway->drain();
  drained.store(true);
  second.join();
  gateway->stop();
  log::info("stopped");
  return 0;
}
