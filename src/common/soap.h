/* soap.h: SOAP 1.1 (document/literal) between Koala's components, over
 * HTTPS with mutual TLS (see ARCHITECTURE.md; the messages of each component
 * are written down in docs/wsdl/).
 *
 * A request is an Envelope whose Body holds one element named after the
 * operation ("ncRunInstance"), in the component's namespace
 * ("urn:koala:nc"); the reply's Body holds "<operation>Response", or a
 * Fault.  Faults carry a Koala error in their detail:
 *
 *   <soap:Fault><faultcode>soap:Client</faultcode>
 *     <faultstring>message</faultstring>
 *     <detail><koala:Error xmlns:koala="urn:koala"><koala:Code>
 *       InsufficientInstanceCapacity</koala:Code>
 *       <koala:Message>message</koala:Message></koala:Error></detail>
 *   </soap:Fault>
 *
 * so that a fault raised on a node reaches the EC2 caller as the same EC2
 * error code.  faultcode is soap:Client for errors of the request (an
 * error with a code and a 4xx status), soap:Server otherwise.
 */
#ifndef KOALA_SOAP_H
#define KOALA_SOAP_H

#include <stddef.h>

#include "error.h"
#include "http_client.h"
#include "http_server.h"
#include "xml.h"

#define SOAP_ENV_NS "http://schemas.xmlsoap.org/soap/envelope/"
#define SOAP_MAX_MESSAGE (16u * 1024 * 1024)

/* ---- writing ---- */

/* Starts an Envelope whose Body holds <name xmlns="ns">; add the message's
 * children with the xml_* writer functions, then soap_finish(). */
struct xml_writer *soap_start(const char *name, const char *ns);
/* Closes everything; the malloc'd document (NULL when memory ran out). */
char *soap_finish(struct xml_writer *w, size_t *len);
/* A whole Fault envelope for err (malloc'd). */
char *soap_fault(const struct koala_error *err, size_t *len);

/* ---- reading ---- */

/* Parses an envelope and finds the single element in its Body.  A Fault
 * is turned into *err (its Koala code and message) and -1.  Malformed:
 * "MalformedXML" / "InvalidRequest". */
int soap_parse(const char *data, size_t len, struct xml_doc **doc,
               const struct xml_node **body, struct koala_error **err);
/* As soap_parse, for a server reading a request: a Fault there is the
 * peer's mistake (InvalidRequest), not an error the peer reports. */
int soap_parse_request(const char *data, size_t len, struct xml_doc **doc,
                       const struct xml_node **body, struct koala_error **err);

/* Child text helpers for reading messages: */
/* Text of child `name` (malloc'd), or NULL with *err set (InvalidParameter)
 * when the element is missing. */
char *soap_text(const struct xml_node *n, const char *name,
                struct koala_error **err);
/* Integer child; def when absent; -1 with *err if not a number. */
int soap_int(const struct xml_node *n, const char *name, long long def,
             long long *out, struct koala_error **err);

/* ---- client ---- */

struct soap_client;

/* endpoint: "https://127.0.0.1:8775/".  tls: the cloud CA and this
 * component's certificate; copied. */
struct soap_client *soap_client_new(const char *endpoint,
                                    const struct http_client_tls *tls,
                                    unsigned timeout_ms,
                                    struct koala_error **err);
void soap_client_free(struct soap_client *c);
const char *soap_client_endpoint(const struct soap_client *c);

/* Sends a request made with soap_start()/soap_finish() (request is taken
 * over and freed) for `action`, and returns the reply's body element in
 * *body (valid while *doc lives).  A transport failure is an error with
 * code "ServiceUnavailable"; a Fault is its own error.  One thread at a
 * time per client. */
int soap_call(struct soap_client *c, const char *action, char *request,
              size_t len, struct xml_doc **doc, const struct xml_node **body,
              struct koala_error **err);

/* ---- server ---- */

/* Replies to an HTTP request with a SOAP document (taken over) or a
 * fault (HTTP 500, as SOAP 1.1 requires). */
void soap_reply(struct http_request *req, char *doc, size_t len);
void soap_reply_fault(struct http_request *req, const struct koala_error *err);

#endif
