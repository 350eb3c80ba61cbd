-- Demo schema for `pgwarden demo` and the integration tests: a small shop with personal data.
CREATE TABLE customers (
    id          serial PRIMARY KEY,
    full_name   text NOT NULL,
    email       text NOT NULL UNIQUE,
    phone       text,
    ssn         text,
    birth_date  date,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE products (
    id          serial PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    price       numeric(10, 2) NOT NULL CHECK (price >= 0)
);

CREATE TABLE orders (
    id           serial PRIMARY KEY,
    customer_id  integer NOT NULL REFERENCES customers (id),
    product_id   integer NOT NULL REFERENCES products (id),
    quantity     integer NOT NULL CHECK (quantity > 0),
    card_last4   text,
    ordered_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_notes (
    id    bigserial PRIMARY KEY,
    note  text NOT NULL
);

INSERT INTO customers (full_name, email, phone, ssn, birth_date) VALUES
    ('Ada Lovelace',      'ada@example.com',      '+44 20 7946 0001', '123-45-6789', '1815-12-10'),
    ('Alan Turing',       'alan@example.org',     '+44 20 7946 0002', '987-65-4321', '1912-06-23'),
    ('Grace Hopper',      'grace@navy.example',   '+1 202 555 0143',  '555-12-3456', '1906-12-09'),
    ('Edsger Dijkstra',   'edsger@example.nl',    '+31 20 555 0199',  '222-33-4444', '1930-05-11'),
    ('Barbara Liskov',    'barbara@mit.example',  '+1 617 555 0100',  '333-44-5555', '1939-11-07'),
    ('Donald Knuth',      'don@stanford.example', '+1 650 555 0123',  '444-55-6666', '1938-01-10');

INSERT INTO products (sku, name, price) VALUES
    ('KB-01', 'Mechanical keyboard', 129.00),
    ('MS-02', 'Trackball mouse', 59.50),
    ('MN-03', '27 inch monitor', 319.99),
    ('CB-04', 'USB-C cable', 9.90);

INSERT INTO orders (customer_id, product_id, quantity, card_last4)
SELECT c.id, p.id, 1 + (c.id + p.id) % 3, lpad(((c.id * 7919 + p.id * 104729) % 10000)::text, 4, '0')
FROM customers c CROSS JOIN products p
WHERE (c.id + p.id) % 2 = 0;
