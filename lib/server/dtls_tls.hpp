// coapgw::server::DtlsTls — a session's DTLS engine seen through the session model's TlsState, and
// the device identity the gateway keeps as the session's app data. Shared by the DTLS transport
// (which creates them) and the worker (which reads identities and exports engines).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "dtls/engine.hpp"
#include "session/session.hpp"

namespace coapgw::server {

// The gateway's app data on an authenticated session (coap_session_set_app_data), whatever its
// transport (DTLS here, TLS in stream_transport.cpp): who the device is, and its tenant as the
// device registry gave it ("" for local keys). Plain sessions carry none.
class DeviceData {
 public:
  virtual ~DeviceData() = default;
  virtual std::string_view identity() const = 0;
  std::string tenant;
  // DeviceLinks: this session's place in its identity's list (so that a session is indexed and
  // dropped in O(1) even when a million devices share one identity).
  std::uint32_t link_slot = UINT32_MAX;
};

// A DTLS engine seen through the session model's TlsState; also the session's DeviceData.
class DtlsTls final : public session::TlsState, public DeviceData {
 public:
  explicit DtlsTls(std::unique_ptr<dtls::Engine> engine) : engine_(std::move(engine)) {}
  dtls::Engine& engine() { return *engine_; }
  void* native_handle() const override { return engine_->native_handle(); }
  session::TlsLibrary library() const override { return session::TlsLibrary::openssl; }
  std::span<const std::byte> psk_key() const override { return engine_->psk_key(); }
  std::string_view psk_hint() const override { return engine_->psk_hint(); }
  std::string_view identity() const override { return engine_->identity(); }
  // When a ClientHello from this session's address last made us ping the device, and when a record
  // of this session last authenticated (live_hello.hpp). Not the session's last_seen(), which the
  // idle pool also moves when the session is released.
  session::TimePoint hello_probe_sent{};
  session::TimePoint last_authenticated{};
  // dtls.psk.lookup: the key came from the device registry (the session is indexed by identity in
  // PskLookup); the tenant it gave is DeviceData::tenant.
  bool registry_keyed = false;

 private:
  std::unique_ptr<dtls::Engine> engine_;
};

// The gateway's app data on a DTLS session (coap_session_set_app_data): the session's DtlsTls, which
// holds the authenticated device identity (owned by its DTLS engine) and the device's tenant (from
// the device registry), so it lives exactly as long as the session and needs no release hook.
// Plain CoAP sessions carry none.
inline void set_device_identity(session::Session& s) {
  if (auto* t = s.tls_state()) s.set_app_data(static_cast<DeviceData*>(static_cast<DtlsTls*>(t)));
}
inline std::string_view device_identity(const session::Session& s) {
  auto* device = static_cast<const DeviceData*>(s.app_data());
  return device != nullptr ? device->identity() : std::string_view{};
}
// "" when the device has no tenant (local keys, plain CoAP).
inline std::string_view device_tenant(const session::Session& s) {
  auto* device = static_cast<const DeviceData*>(s.app_data());
  return device != nullptr ? std::string_view(device->tenant) : std::string_view{};
}

// The session's DTLS engine, or nullptr for a plain session.
inline dtls::Engine* engine_of(session::Session& s) {
  auto* t = s.tls_state();
  return t != nullptr ? &static_cast<DtlsTls*>(t)->engine() : nullptr;
}

}  // namespace coapgw::server
