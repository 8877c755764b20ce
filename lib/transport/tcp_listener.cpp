// Boost.Asio driver for RFC 8323 over plain TCP: accept, read into StreamConnection, write its frames.
//
// Lifetime: a link is owned by the listener's map. Its handlers capture a raw pointer, so a link is
// erased only when it is closing and no operation of its own is pending (pending_ counts them); the
// erase is posted, never done from inside one of its handlers.
#include "transport/tcp_listener.hpp"

#include <sys/socket.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <cerrno>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "transport/tls_filter.hpp"
#include "transport/tls_psk_identity.hpp"
#include "transport/ws_filter.hpp"

namespace coapgw::transport {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

Address to_address(const tcp::endpoint& ep) { return Address::from_sockaddr(ep.data()); }

tcp::endpoint to_endpoint(const Address& a) {
  tcp::endpoint ep;
  ep.resize(a.to_sockaddr(ep.data(), ep.capacity()));
  return ep;
}

}  // namespace

class TcpLink;

struct TcpStreamListener::Impl {
  Impl(asio::io_context& c, TcpListenerSettings s, Host& h) : ioc(c), acceptor(c), settings(s), host(h) {
    settings.stream.framing = settings.websocket ? coap::Framing::websocket : coap::Framing::tcp;
  }
  void do_accept();
  void on_accept(const boost::system::error_code& ec, tcp::socket socket);
  void erase(std::uint64_t id) { links.erase(id); }

  asio::io_context& ioc;
  tcp::acceptor acceptor;
  TcpListenerSettings settings;
  Host& host;
  std::unordered_map<std::uint64_t, std::unique_ptr<TcpLink>> links;
  std::vector<std::byte> read_buffer = std::vector<std::byte>(settings.read_chunk);  // shared: see do_read
  std::uint64_t next_id = 1;
  Counters counters;
  bool stopped = false;
};

class TcpLink final : public StreamLink, private StreamConnection::Host {
 public:
  TcpLink(TcpStreamListener::Impl& owner, std::uint64_t id, tcp::socket socket)
      : owner_(owner), id_(id), socket_(std::move(socket)), timer_(owner.ioc), close_timer_(owner.ioc),
        conn_(owner.settings.stream, *this) {
    boost::system::error_code ec;
    socket_.non_blocking(true, ec);  // reads happen when the socket is readable, into the listener's buffer
    remote_ = to_address(socket_.remote_endpoint(ec));
    local_ = to_address(socket_.local_endpoint(ec));
    if (owner.settings.tls != nullptr) tls_ = std::make_unique<TlsFilter>(owner.settings.tls);
    if (tls_ && owner.host.reads_psk_identity()) psk_identity_ = std::make_unique<TlsPskIdentity>();
    if (owner.settings.websocket) ws_ = std::make_unique<WsFilter>(owner.settings.stream.max_message_size);
  }

  void start() {
    // The host may have refused the connection in opened() (session table full): it is closing and
    // its erase is posted; nothing may be started on it.
    if (closing_) return;
    if (tls_ || ws_) {
      // RFC 8323 starts once TLS is up and the WebSocket upgraded (ready()); until then only the
      // handshake timeout runs.
      handshake_deadline_ = StreamClock::now() + owner_.settings.handshake_timeout;
    } else {
      conn_.start(StreamClock::now());
    }
    after_call();
    do_read();
  }

  // ---- StreamLink ----
  std::uint64_t id() const override { return id_; }
  const Address& remote() const override { return remote_; }
  const Address& local() const override { return local_; }
  StreamState state() const override { return conn_.state(); }
  StreamConnection::SendResult send(const coap::Message& message) override {
    const auto result = conn_.send(message);
    after_call();
    return result;
  }
  void release(std::string_view diagnostic) override {
    conn_.release(diagnostic, StreamClock::now());
    after_call();
  }
  void abort(std::string_view diagnostic) override {
    conn_.abort(diagnostic);
    after_call();
  }
  ssl_st* tls() const override {
    return tls_ && tls_->status() != TlsFilter::Status::handshaking ? tls_->native() : nullptr;
  }
  void resume() override {
    if (!held_ || closing_) return;
    const std::vector<std::byte> bytes = std::move(*held_);
    held_.reset();
    on_tls_bytes(bytes, StreamClock::now());
    after_call();
  }

 private:
  // ---- StreamConnection::Host ----
  void deliver(const coap::MessageView& m, StreamTime now) override { owner_.host.deliver(*this, m, now); }
  void established(const coap::Csm& peer) override { owner_.host.established(*this, peer); }
  void refused(StreamRefusal r) override { owner_.host.refused(*this, r); }
  void send_frame(std::span<const std::byte> frame) override {
    if (closing_ || overflowed_) return;
    if (!ws_) return send_bytes(frame);
    std::vector<std::byte> wrapped;  // RFC 8323 §4: one frame, one binary WebSocket message
    if (ws_->write(frame, wrapped)) send_bytes(wrapped);
  }
  // Plaintext for the peer. Over TLS it is sealed when the write starts, so the answers of one
  // handler share TLS records.
  void send_bytes(std::span<const std::byte> bytes) {
    if (!tls_) return enqueue(bytes);
    if (tls_->status() != TlsFilter::Status::open) return;
    add(tls_plain_, bytes);
  }
  // Bytes for the socket, in order (after any plaintext still to seal), within the slow-reader bound.
  void enqueue(std::span<const std::byte> bytes) {
    seal();
    add(out_, bytes);
  }
  void seal() {
    if (tls_plain_.empty()) return;
    tls_->write(tls_plain_, out_);
    std::vector<std::byte>().swap(tls_plain_);
  }
  void add(std::vector<std::byte>& to, std::span<const std::byte> bytes) {
    if (overflowed_ || bytes.empty()) return;
    if (queued_ + bytes.size() > owner_.settings.max_write_queue) {
      overflowed_ = true;  // acted on in after_call(), outside the connection's frame
      return;
    }
    to.insert(to.end(), bytes.begin(), bytes.end());
    queued_ += bytes.size();
    if (!writing_) {
      // One write for everything this handler produces (pipelined answers): started once it returns.
      writing_ = true;
      ++pending_;
      asio::post(owner_.ioc, [this] {
        --pending_;
        do_write();
        maybe_reap();
      });
    }
  }
  void closed(StreamClose reason) override {
    owner_.host.closed(*this, reason);
    begin_close();
  }

  // After every call into the connection: the slow-reader bound, then the timer.
  void after_call() {
    if (overflowed_ && conn_.state() != StreamState::closed) {
      ++owner_.counters.slow_readers;
      conn_.abort("slow reader");  // the Abort itself is dropped: the queue is full
    }
    arm_timer();
    maybe_reap();
  }

  // Waits for the socket to be readable, then reads into the listener's one buffer and processes
  // the bytes at once: an idle connection holds no read buffer.
  void do_read() {
    if (closing_) return;
    ++pending_;
    socket_.async_wait(tcp::socket::wait_read, [this](const boost::system::error_code& ec) {
      --pending_;
      if (!closing_) {
        auto& buffer = owner_.read_buffer;
        boost::system::error_code read_ec;
        const std::size_t n = ec ? 0 : socket_.read_some(asio::buffer(buffer), read_ec);
        if (!ec && read_ec == asio::error::would_block) {
          do_read();
          return;
        }
        if (ec || read_ec || n == 0)
          conn_.on_end_of_stream();
        else if (tls_)
          on_tls_bytes(std::span(buffer).first(n), StreamClock::now());
        else
          on_plain(std::span(buffer).first(n), StreamClock::now());
        after_call();
        if (!closing_) do_read();
      }
      maybe_reap();
    });
  }

  void do_write() {
    if (tls_) seal();
    if (out_.empty() || !socket_.is_open()) {
      writing_ = false;
      if (closing_) close_socket();
      return;
    }
    writing_ = true;
    sending_.swap(out_);
    ++pending_;
    asio::async_write(socket_, asio::buffer(sending_), [this](const boost::system::error_code& ec, std::size_t) {
      --pending_;
      queued_ = out_.size() + tls_plain_.size();  // what is still waiting (TLS adds record overhead)
      std::vector<std::byte>().swap(sending_);  // an idle connection keeps no write buffer either
      if (ec) {
        writing_ = false;
        std::vector<std::byte>().swap(out_);
        std::vector<std::byte>().swap(tls_plain_);
        queued_ = 0;
        if (!closing_) conn_.on_end_of_stream();
        after_call();
        close_socket();
      } else {
        do_write();
      }
      maybe_reap();
    });
  }

  // Ciphertext from the socket: handshake answers out, then RFC 8323 over the plaintext.
  void on_tls_bytes(std::span<const std::byte> in, StreamTime now) {
    if (hold_for_key(in)) return;
    const bool was_handshaking = tls_->status() == TlsFilter::Status::handshaking;
    std::vector<std::byte> plain, out;
    const auto status = tls_->on_ciphertext(in, plain, out);
    enqueue(out);
    if (status == TlsFilter::Status::failed) return conn_.end(StreamClose::tls_failed);
    if (was_handshaking && status != TlsFilter::Status::handshaking) {
      ++owner_.counters.tls_handshakes;
      if (!ws_ && !ready(now)) return;
    }
    if (!plain.empty()) on_plain(plain, now);
    if (status == TlsFilter::Status::closed) conn_.on_end_of_stream();
  }

  // dtls.psk.lookup: the handshake's bytes wait while the Host looks up the identity the client
  // named; true when `in` was held (or the connection ended: too much held).
  bool hold_for_key(std::span<const std::byte> in) {
    if (held_) {
      if (held_->size() + in.size() > TcpStreamListener::max_held_bytes) {
        held_.reset();
        conn_.end(StreamClose::tls_failed);
      } else {
        held_->insert(held_->end(), in.begin(), in.end());
      }
      return true;
    }
    if (!psk_identity_) return false;
    if (tls_->status() != TlsFilter::Status::handshaking) {
      psk_identity_.reset();  // an open connection keeps nothing of its handshake
      return false;
    }
    const auto state = psk_identity_->feed(in);
    if (state == TlsPskIdentity::State::reading) return false;
    const std::string identity = psk_identity_->identity();
    psk_identity_.reset();  // one identity per connection
    if (state != TlsPskIdentity::State::found || !owner_.host.wait_for_key(*this, identity)) return false;
    held_.emplace(in.begin(), in.end());
    return true;
  }

  // Plaintext from the peer: RFC 8323 bytes, or WebSocket frames carrying RFC 8323 messages.
  void on_plain(std::span<const std::byte> in, StreamTime now) {
    if (!ws_) return conn_.on_bytes(in, now);
    const bool upgrading = ws_->status() == WsFilter::Status::upgrading;
    std::vector<std::vector<std::byte>> messages;
    std::vector<std::byte> out;
    const auto status = ws_->on_bytes(in, messages, out);
    send_bytes(out);
    if (status == WsFilter::Status::failed)
      return conn_.end(upgrading ? StreamClose::upgrade_failed : StreamClose::malformed_frame);
    if (upgrading && status != WsFilter::Status::upgrading && !ready(now)) return;
    for (const auto& m : messages) {
      if (conn_.state() == StreamState::closed) return;
      conn_.on_message(m, now);
    }
    if (status == WsFilter::Status::closed) conn_.on_end_of_stream();
  }

  // TLS finished and the WebSocket upgraded (where there are): the Host has its say, then our CSM.
  bool ready(StreamTime now) {
    handshake_deadline_.reset();
    if (!owner_.host.secured(*this)) {
      conn_.end(StreamClose::tls_failed);
      return false;
    }
    conn_.start(now);
    return true;
  }

  void arm_timer() {
    const auto next = closing_ ? std::nullopt : handshake_deadline_ ? handshake_deadline_ : conn_.next_deadline();
    if (next == armed_) return;
    armed_ = next;
    timer_.cancel();
    if (!next) return;
    timer_.expires_at(*next);
    ++pending_;
    timer_.async_wait([this](const boost::system::error_code& ec) {
      --pending_;
      if (!ec && !closing_) {
        armed_.reset();
        const auto now = StreamClock::now();
        if (handshake_deadline_ && now >= *handshake_deadline_) conn_.end(StreamClose::handshake_timeout);
        else conn_.on_tick(now);
        after_call();
      }
      maybe_reap();
    });
  }

  // The connection is over: write what is queued (unless the peer stopped reading), then close.
  void begin_close() {
    if (ws_ && !overflowed_) {
      std::vector<std::byte> bye;  // WebSocket Close (1000) after the last messages
      ws_->close(1000, bye);
      send_bytes(bye);
    }
    if (tls_ && !overflowed_) {
      std::vector<std::byte> notify;  // close_notify after the last frames
      seal();
      tls_->shutdown(notify);
      enqueue(notify);
    }
    closing_ = true;
    timer_.cancel();
    armed_.reset();
    if (overflowed_ || !writing_) {
      close_socket();
      return;
    }
    close_timer_.expires_after(owner_.settings.write_timeout);
    ++pending_;
    close_timer_.async_wait([this](const boost::system::error_code& ec) {
      --pending_;
      if (!ec && socket_.is_open()) {
        ++owner_.counters.flush_timeouts;
        close_socket();
      }
      maybe_reap();
    });
  }

  void close_socket() {
    boost::system::error_code ignored;
    if (!socket_.is_open()) return;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    close_timer_.cancel();
  }

  void maybe_reap() {
    if (!closing_ || pending_ != 0 || reaped_) return;
    reaped_ = true;
    close_socket();
    asio::post(owner_.ioc, [owner = &owner_, id = id_] { owner->erase(id); });
  }

  TcpStreamListener::Impl& owner_;
  std::uint64_t id_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  asio::steady_timer close_timer_;
  StreamConnection conn_;
  std::unique_ptr<TlsFilter> tls_;                 // coaps+tcp, coaps+ws
  std::unique_ptr<TlsPskIdentity> psk_identity_;   // until the client named its PSK identity (lookup)
  std::optional<std::vector<std::byte>> held_;     // bytes waiting for the Host's key lookup
  std::unique_ptr<WsFilter> ws_;                   // coap+ws, coaps+ws
  std::optional<StreamTime> handshake_deadline_;   // while the TLS handshake runs
  Address remote_;
  Address local_;
  std::vector<std::byte> tls_plain_;  // plaintext to seal at the next write (TLS)
  std::vector<std::byte> out_;      // bytes waiting for the next write
  std::vector<std::byte> sending_;  // bytes of the write in progress
  std::size_t queued_ = 0;
  std::optional<StreamTime> armed_;
  int pending_ = 0;  // async operations of this link not yet completed
  bool writing_ = false;
  bool closing_ = false;
  bool overflowed_ = false;
  bool reaped_ = false;
};

void TcpStreamListener::Impl::do_accept() {
  acceptor.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) { on_accept(ec, std::move(socket)); });
}

void TcpStreamListener::Impl::on_accept(const boost::system::error_code& ec, tcp::socket socket) {
  if (stopped || ec == asio::error::operation_aborted) return;
  if (!ec) {
    boost::system::error_code ignored;
    const Address remote = to_address(socket.remote_endpoint(ignored));
    if (links.size() >= settings.max_connections || !host.admit(remote)) {
      ++counters.refused_over_cap;
      socket.close(ignored);
    } else {
      ++counters.accepted;
      socket.set_option(tcp::no_delay(true), ignored);
      const std::uint64_t id = next_id++;
      auto link = std::make_unique<TcpLink>(*this, id, std::move(socket));
      TcpLink& ref = *link;
      links.emplace(id, std::move(link));
      host.opened(ref);
      ref.start();
    }
  }
  do_accept();  // a failed accept (EMFILE, ...) costs that connection, not the listener
}

TcpStreamListener::TcpStreamListener(asio::io_context& ioc, TcpListenerSettings settings, Host& host)
    : impl_(std::make_unique<Impl>(ioc, settings, host)) {}

TcpStreamListener::~TcpStreamListener() = default;

std::error_code TcpStreamListener::listen(const Address& address) {
  boost::system::error_code ec;
  const tcp::endpoint ep = to_endpoint(address);
  impl_->acceptor.open(ep.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec && impl_->settings.reuse_port) {
    const int on = 1;
    if (::setsockopt(impl_->acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0)
      ec.assign(errno, boost::system::system_category());
  }
  if (!ec) impl_->acceptor.bind(ep, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    boost::system::error_code ignored;
    impl_->acceptor.close(ignored);
    return std::error_code(ec);
  }
  impl_->do_accept();
  return {};
}

std::uint16_t TcpStreamListener::port() const {
  boost::system::error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

void TcpStreamListener::stop() {
  impl_->stopped = true;
  boost::system::error_code ignored;
  impl_->acceptor.close(ignored);
  std::vector<TcpLink*> open;
  for (auto& [id, link] : impl_->links) open.push_back(link.get());
  for (TcpLink* link : open) link->abort("shutting down");
}

std::size_t TcpStreamListener::connections() const { return impl_->links.size(); }

const TcpStreamListener::Counters& TcpStreamListener::counters() const { return impl_->counters; }

}  // namespace coapgw::transport
