#pragma once

// Hostile and edge-case HTTP/1.1 messages, shared by the parser tests (fed whole, a byte at a time and split at
// every point) and the server tests (sent over a socket). Sources: RFC 9112 sections 2-7 and RFC 9110's field
// syntax, the request-smuggling vector lists that HTTP Garden and smuggling scanners use (TE/CL obfuscations,
// whitespace and control characters around names, colons and values, bare CR and LF, chunk framing), and the
// defects found in coring's own review (issue 10).

#include <string>
#include <vector>

namespace coring_test {

struct http_vector {
    const char* what;
    std::string bytes;
    int status; ///< what the server must answer (then close)
};

/// Requests that must be refused. The routes they name exist (POST /echo, GET /), so a 200 means the defect is back.
inline std::vector<http_vector> refused_requests() {
    using namespace std::string_literals;
    const std::string post = "POST /echo HTTP/1.1\r\nHost: a\r\n";
    const std::string chunked = post + "Transfer-Encoding: chunked\r\n\r\n";
    return {
        // Header block ends (issue 10: llhttp 8 took "\r\n\rX" as the end of the block).
        {"header block ended by CR LF CR X",
         "GET / HTTP/1.1\r\nHost: a\r\n\rXGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"header block ended by CR CR", "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", 400},
        {"header block ended by bare LF", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400},
        {"bare LF after the request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400},
        {"bare LF after a field", "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400},
        {"bare LF everywhere", "GET / HTTP/1.1\nHost: a\n\n", 400},
        {"bare CR inside a value", "GET / HTTP/1.1\r\nHost: a\r\nX: y\rZ: w\r\n\r\n", 400},
        {"CR CR LF after a field", "GET / HTTP/1.1\r\nHost: a\r\nX: y\r\r\n\r\n", 400},
        {"CR CR LF after the request line", "GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", 400},
        // Field names and the colon (RFC 9112 section 5.1, RFC 9110 section 5.1).
        {"space before the colon (Host)", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
        {"space before the colon (Transfer-Encoding)", post + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400},
        {"tab before the colon", post + "Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n", 400},
        {"name and colon on separate lines", post + "Transfer-Encoding\r\n : chunked\r\n\r\n0\r\n\r\n", 400},
        {"space inside a name", "GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n", 400},
        {"control character in a name", "GET / HTTP/1.1\r\nHost: a\r\nX\x01Y: z\r\n\r\n", 400},
        {"non-ASCII name", "GET / HTTP/1.1\r\nHost: a\r\nH\xc3\xa9: z\r\n\r\n", 400},
        {"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: z\r\n\r\n", 400},
        {"line without a colon", "GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n", 400},
        {"first field line starts with whitespace", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400},
        {"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n  b\r\n\r\n", 400},
        {"obs-fold with a tab", "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n\tb\r\n\r\n", 400},
        {"obs-fold continuing Transfer-Encoding", post + "Transfer-Encoding: identity\r\n chunked\r\n\r\n0\r\n\r\n",
         400},
        // Field values.
        {"NUL in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"s, 400},
        {"vertical tab after chunked", post + "Transfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n", 400},
        {"form feed before chunked",
         post + "Transfer-Encoding: \x0c"
                "chunked\r\n\r\n0\r\n\r\n",
         400},
        {"DEL in a value",
         "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f"
         "b\r\n\r\n",
         400},
        {"escape in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x1b[0m\r\n\r\n", 400},
        // Host (RFC 9112 section 3.2).
        {"HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", 400},
        {"HTTP/1.1 with only other fields", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400},
        {"two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        {"two Host fields, HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        {"two Host fields with the same value", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400},
        {"Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
        {"Host with a path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
        {"Host with user info", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400},
        {"Host with a bad port", "GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", 400},
        {"Host with two ports", "GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", 400},
        {"Host with an unclosed IP literal", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400},
        {"Host list", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400},
        {"Host of two joined by a comma", "GET / HTTP/1.1\r\nHost: a,b\r\n\r\n", 400},
        {"Host with a bare percent", "GET / HTTP/1.1\r\nHost: a%\r\n\r\n", 400},
        {"Host with a bad escape", "GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", 400},
        {"Host with a port past 65535", "GET / HTTP/1.1\r\nHost: a:99999999999999999\r\n\r\n", 400},
        // Transfer-Encoding (RFC 9112 section 6.1) and Content-Length (section 6.2, 6.3).
        {"Transfer-Encoding in HTTP/1.0",
         "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400},
        {"Transfer-Encoding in HTTP/1.0 with Content-Length",
         "POST /echo HTTP/1.0\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc", 400},
        {"Content-Length and Transfer-Encoding",
         post + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
        {"Transfer-Encoding then Content-Length",
         post + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400},
        {"chunked not last", post + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400},
        // An empty Transfer-Encoding: llhttp 8 does not flag it and frames by Content-Length (review of issue 10).
        {"empty Transfer-Encoding with Content-Length", post + "Transfer-Encoding:\r\nContent-Length: 5\r\n\r\nhello",
         400},
        {"Content-Length with empty Transfer-Encoding", post + "Content-Length: 5\r\nTransfer-Encoding:\r\n\r\nhello",
         400},
        {"blank Transfer-Encoding", post + "Transfer-Encoding: \t \r\n\r\n", 400},
        {"empty Transfer-Encoding in HTTP/1.0",
         "POST /echo HTTP/1.0\r\nTransfer-Encoding:\r\nContent-Length: 5\r\n\r\nhello", 400},
        {"Transfer-Encoding of commas", post + "Transfer-Encoding: ,,\r\n\r\n", 400},
        {"chunked twice in one field", post + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400},
        {"chunked twice in two fields",
         post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
        {"xchunked", post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501},
        {"chunkedx", post + "Transfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n", 501},
        {"quoted chunked", post + "Transfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n", 400},
        {"chunked then an unknown coding field",
         post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n", 400},
        {"an unknown coding before chunked", post + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
        {"two Content-Length values", post + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
        {"two equal Content-Length values", post + "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400},
        {"Content-Length list", post + "Content-Length: 3, 3\r\n\r\nabc", 400},
        {"Content-Length with a plus", post + "Content-Length: +3\r\n\r\nabc", 400},
        {"Content-Length in hex", post + "Content-Length: 0x3\r\n\r\nabc", 400},
        {"Content-Length with a space inside", post + "Content-Length: 3 3\r\n\r\nabc", 400},
        {"Content-Length negative", post + "Content-Length: -1\r\n\r\n", 400},
        {"Content-Length with a letter", post + "Content-Length: 1x\r\n\r\nx", 400},
        {"Content-Length empty", post + "Content-Length: \r\n\r\n", 400},
        {"Content-Length overflowing", post + "Content-Length: 99999999999999999999999\r\n\r\n", 400},
        // Chunk framing (RFC 9112 section 7.1).
        {"chunk data followed by two other bytes", chunked + "3\r\nabcQQ0\r\n\r\n", 400},
        {"chunk data longer than its size", chunked + "3\r\nabcd\r\n0\r\n\r\n", 400},
        {"chunk data followed by bare LF", chunked + "3\r\nabc\n0\r\n\r\n", 400},
        {"chunk data followed by bare CR", chunked + "3\r\nabc\r0\r\n\r\n", 400},
        {"chunk size with bare LF", chunked + "3\nabc\r\n0\r\n\r\n", 400},
        {"chunk size in 0x form", chunked + "0x3\r\nabc\r\n0\r\n\r\n", 400},
        {"chunk size with a plus", chunked + "+3\r\nabc\r\n0\r\n\r\n", 400},
        {"chunk size negative", chunked + "-1\r\nx\r\n0\r\n\r\n", 400},
        {"chunk size not hex", chunked + "zz\r\nhello\r\n0\r\n\r\n", 400},
        {"chunk size empty", chunked + "\r\nabc\r\n0\r\n\r\n", 400},
        {"chunk size with trailing space", chunked + "3 \r\nabc\r\n0\r\n\r\n", 400},
        {"chunk size overflowing", chunked + "fffffffffffffffffff\r\nx\r\n0\r\n\r\n", 400},
        {"chunk size 2^64 wrapping to 0", chunked + "10000000000000000\r\n\r\n", 400},
        {"chunk extension with bare LF", chunked + "3;a=b\nabc\r\n0\r\n\r\n", 400},
        {"chunk extension with a control", chunked + "3;a=\x01\r\nabc\r\n0\r\n\r\n", 400},
        {"last chunk with bare LF", chunked + "3\r\nabc\r\n0\n\r\n", 400},
        {"end of trailers with bare LF", chunked + "3\r\nabc\r\n0\r\n\n", 400},
        {"trailer with bare LF", chunked + "0\r\nX: y\n\r\n", 400},
        {"trailer obs-fold", chunked + "0\r\nX: y\r\n z\r\n\r\n", 400},
        {"trailer with space before the colon", chunked + "0\r\nX : y\r\n\r\n", 400},
        // The request line (RFC 9112 section 3).
        {"space before the method", " GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"two spaces after the method", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"tab after the method", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"two spaces before the version", "GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"tab before the version", "GET /\tHTTP/1.1\r\nHost: a\r\n\r\n", 505},
        {"no version (HTTP/0.9)", "GET /\r\nHost: a\r\n\r\n", 505},
        {"a version with three parts", "GET / HTTP/1.1.1\r\nHost: a\r\n\r\n", 400},
        {"space after the version", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400},
        {"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
        {"a space in the target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"NUL in the target", "GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n"s, 400},
        {"DEL in the target", "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"a bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"TLS bytes", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n", 400},
        {"an empty line then bare LF", "\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    };
}

/// Requests at the edges of the grammar that must be served (a parser stricter than the RFC breaks real clients).
inline std::vector<http_vector> accepted_requests() {
    return {
        {"empty lines before the request line", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 200},
        {"no space after the colon", "GET / HTTP/1.1\r\nHost:a\r\n\r\n", 200},
        {"tabs and spaces around a value", "GET / HTTP/1.1\r\nHost: \t a \t\r\n\r\n", 200},
        {"empty Host (RFC 9112 section 3.2)", "GET / HTTP/1.1\r\nHost: \r\n\r\n", 200},
        {"Host with a port", "GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", 200},
        {"Host as an IPv6 literal", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 200},
        {"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", 200},
        {"obs-text in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n", 200},
        {"empty value", "GET / HTTP/1.1\r\nHost: a\r\nX:\r\n\r\n", 200},
        {"chunk extensions, quoted and bare",
         "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
         "3;n=\"v;x\"\r\nabc\r\n1;e\r\nd\r\n0;last\r\n\r\n",
         200},
        {"a chunk size with more leading zeros than digits allowed",
         "POST /echo HTTP/1.1\r\nHost: a\r\n"
         "Transfer-Encoding: chunked\r\n\r\n"
         "00000000000000000003\r\nabc\r\n0\r\n\r\n",
         200},
        {"upper-case chunk size with leading zeros",
         "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
         "00A\r\n0123456789\r\n0\r\n\r\n",
         200},
        {"Transfer-Encoding with odd case and spacing",
         "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  ChUnKeD \r\n\r\n"
         "0\r\n\r\n",
         200},
    };
}

} // namespace coring_test
