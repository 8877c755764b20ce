// coapgw::api answers — the JSON bodies the backend API sends (DESIGN
// "Downlink"). Pure functions over the Downlink and queue types.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "api/downlink.hpp"
#include "api/downlink_queue.hpp"

namespace coapgw::api {

// "2.05" for 69.
std::string code_text(std::uint8_t code);

// {code, content_format, payload | payload_b64, session, remote}
std::string render_answer(const DownlinkAnswer& answer);
// {id, state: "queued"}
std::string render_queued(std::uint64_t id);
// {id, device, state, method, path, answer?: {...}, error?}
std::string render_record(const QueuedRequest& record);
// {id, code, content_format, payload | payload_b64, ...} of the registration response
std::string render_observation(const ObserveResult& result);
// {responses: [{remote, code, content_format, payload | payload_b64}]}
std::string render_group(const GroupResult& result);
// {error: message}
std::string render_error(std::string_view message);

}  // namespace coapgw::api
