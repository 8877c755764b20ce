// coapgw CID-aware balancing for nginx's stream module (njs, Debian libnginx-mod-stream-js).
//
// nginx runs this once per UDP "session" (one per device 4-tuple) on its first datagram. A DTLS
// 1.2 record of content type 25 (tls12_cid, RFC 9146) carries the Connection ID right after the
// 11-byte header (type, version, epoch, sequence number); the first byte of every CID coapgw
// issues is its dtls.connection_id.node_id. Such a record goes to that node's upstream, so a
// device whose NAT rebinding gave it a new 4-tuple still reaches the gateway that holds its
// session. Anything else (ClientHello, plain CoAP, a CID of a node we do not know) keeps the
// 4-tuple hash of the "coapgw_hash" upstream.
//
// Contract with nginx.conf: `js_var $coapgw_upstream coapgw_hash;`, `js_preread coapgw.preread;`,
// `proxy_pass $coapgw_upstream;`, and one upstream block named coapgw_node<N> per node id N.
// The nodes it knows are the keys of NODES (node id -> upstream name); keep both in step.

var NODES = { 0: 'coapgw_node0', 1: 'coapgw_node1', 2: 'coapgw_node2' };

var TLS12_CID = 25;
var HEADER = 11;  // type(1) version(2) epoch(2) sequence(6): the CID follows

function byteAt(data, i) {
    return typeof data === 'string' ? data.charCodeAt(i) & 0xff : data[i];
}

// The upstream name for a datagram, or '' to keep the hash.
function route(data) {
    if (data.length <= HEADER || byteAt(data, 0) !== TLS12_CID) return '';
    // DTLS 1.2 record version: major 254 (0xfe).
    if (byteAt(data, 1) !== 0xfe) return '';
    var node = NODES[byteAt(data, HEADER)];
    return node === undefined ? '' : node;
}

function preread(s) {
    s.on('upload', function (data, flags) {
        var node = route(data);
        if (node !== '') {
            s.variables.coapgw_upstream = node;
            s.variables.coapgw_route = 'cid';
        }
        s.off('upload');
        s.done();
    });
}

export default { preread, route };
