// Shared HTTP connection pieces; see http_stream.hpp.
#include "api/http_stream.hpp"

#include <array>
#include <cstdint>
#include <memory>

namespace coapgw::api::http_stream {

namespace {

struct Drain {
  std::array<char, 2048> buffer{};
  std::size_t drained = 0;
  std::function<void()> done;
};

void drain_some(boost::beast::tcp_stream& stream, std::shared_ptr<Drain> drain) {
  stream.async_read_some(boost::asio::buffer(drain->buffer),
                         [&stream, drain](boost::beast::error_code ec, std::size_t bytes) {
                           drain->drained += bytes;
                           if (ec || drain->drained >= max_drain_bytes) return drain->done();
                           drain_some(stream, drain);
                         });
}

}  // namespace

void reset_parser(std::optional<Parser>& parser, std::size_t limit) {
  parser.emplace();
  parser->header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(limit, UINT32_MAX)));
  parser->body_limit(limit);
}

void close(boost::beast::tcp_stream& stream) {
  boost::beast::error_code ignored;
  stream.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
  stream.close();
}

void linger(boost::beast::tcp_stream& stream, std::chrono::milliseconds time, std::function<void()> done) {
  boost::beast::error_code ec;
  stream.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_send, ec);
  if (ec) return done();
  stream.expires_after(time);
  auto drain = std::make_shared<Drain>();
  drain->done = std::move(done);
  drain_some(stream, std::move(drain));
}

}  // namespace coapgw::api::http_stream
