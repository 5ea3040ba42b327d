/* dns_int.h - lib/ims's private contract between dns.c and its unit tests and fuzz target: the
 * handling of raw DNS answers (as c-ares hands them to a query's callback) and the assembly of
 * a result from them, without sockets. Status values are c-ares' (ARES_SUCCESS, ...). */
#ifndef IMS_DNS_INT_H
#define IMS_DNS_INT_H

#include "ims/ims.h"

#define IMS_DNS_NOT_ASKED (-1) /* st4/st6 of a family not (yet) looked up */

/* One exchanger and what its address lookups gave. */
typedef struct ims_dns_host {
    char name[SMTP_DOMAIN_MAX + 1]; /* as DNS gave it; an invalid one with '?' for odd bytes */
    uint16_t pref;
    bool valid;                    /* name is a domain name (smtp_domain_valid): it is asked */
    smtp_ip v4[IMS_DNS_MAX_ADDRS]; /* A: family 4 */
    smtp_ip v6[IMS_DNS_MAX_ADDRS]; /* AAAA: family 6 */
    size_t n4, n6;
    int st4, st6; /* the A and AAAA lookups: an ARES_* status or IMS_DNS_NOT_ASKED */
} ims_dns_host;

/* ims_dns_rng - the next number of the shuffle's generator (splitmix64) at *state. */
uint64_t ims_dns_rng(uint64_t *state);

/* ims_dns_mx_answer - the exchangers of a raw MX answer abuf[0..alen): sorted by preference,
 * equal preferences shuffled with *rng, one entry per name (its best preference), at most
 * IMS_DNS_MAX_MX (the best ones), into hosts[0..*n) (room for IMS_DNS_MAX_MX), st4/st6 at
 * IMS_DNS_NOT_ASKED. A single record whose exchange is the root is a null MX (RFC 7505):
 * *null_mx, *n = 0; a root exchange beside others is ignored. Returns ARES_SUCCESS (*n >= 1
 * or *null_mx), ARES_ENODATA (no MX record), ARES_EBADRESP or ARES_ENOMEM. */
int ims_dns_mx_answer(const unsigned char *abuf, int alen, uint64_t *rng, ims_dns_host *hosts,
                      size_t *n, bool *null_mx);

/* ims_dns_addr_answer - record the outcome of h's A (family 4) or AAAA (6) query: status as
 * the query's callback got it and, for ARES_SUCCESS, the raw answer abuf[0..alen) (CNAMEs
 * followed by c-ares), at most IMS_DNS_MAX_ADDRS addresses, without repeats, IPv4-mapped or
 * unspecified ones (0.0.0.0/8, ::). An answer without addresses is ARES_ENODATA. */
void ims_dns_addr_answer(ims_dns_host *h, int family, int status, const unsigned char *abuf,
                         int alen);

/* ims_dns_assemble - r's list from hosts[0..n) in order, for family (see ims_dns_resolve_mx),
 * and r's status, code and text from what the lookups gave (the table at ims_dns_result);
 * r->domain and r->implicit must be set. Returns 0 or ENOMEM (r is then TRANSIENT 4.3.0). */
int ims_dns_assemble(ims_dns_result *r, const ims_dns_host *hosts, size_t n, ims_dns_family family);
/* ims_dns_host_assemble - the same for ims_dns_resolve_host's one host h (valid): its list,
 * or PERMANENT 5.4.4 "host <h> not found" (NXDOMAIN) / "host <h> has no address", or
 * TRANSIENT 4.4.3; r->domain must be set. Returns 0 or ENOMEM (r is then TRANSIENT 4.3.0). */
int ims_dns_host_assemble(ims_dns_result *r, const ims_dns_host *h, ims_dns_family family);

/* ims_dns_error_name - a short name of a c-ares status for texts: "SERVFAIL", "NXDOMAIN",
 * "timeout", ... (static). */
const char *ims_dns_error_name(int status);
/* ims_dns_transient - status is worth a retry (not ARES_SUCCESS, ARES_ENODATA, ARES_ENOTFOUND
 * or ARES_EBADNAME). */
bool ims_dns_transient(int status);

#endif
