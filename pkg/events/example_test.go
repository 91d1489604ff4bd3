package events_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/shopflow/shopflow/pkg/events"
)

func Example() {
	// Producer: build the event from a payload and encode it for Kafka
	// (in the services, the outbox stores the Message and a relay sends it).
	ev := events.New("/shopflow/payment", events.PaymentAuthorized{
		OrderID: "order-1", PaymentID: "pay-1", AmountCents: 2500, Currency: "USD", AuthorizationCode: "A1",
	})
	msg, err := events.Encode(ev)
	if err != nil {
		panic(err)
	}
	fmt.Println(msg.Topic, string(msg.Key), string(msg.Value))

	// Consumer: decode, then switch on the payload's type.
	got, err := events.Decode(msg.Headers, msg.Value)
	if err != nil {
		panic(err)
	}
	switch p := got.Payload.(type) {
	case events.PaymentAuthorized:
		fmt.Println(got.Type, p.AmountCents, p.Currency)
	}
	// Output:
	// shop.payments order-1 {"order_id":"order-1","payment_id":"pay-1","amount_cents":2500,"currency":"USD","authorization_code":"A1"}
	// shop.payment.authorized.v1 2500 USD
}

func ExampleDecode_errors() {
	ev := events.New("/shopflow/order", events.OrderConfirmed{OrderID: "order-1", ConfirmedAt: time.Now()})
	msg, _ := events.Encode(ev)

	_, err := events.Decode(msg.Headers, []byte(`{"order_id":"order-1","confirmed_at":null}`))
	fmt.Println(err)
	fmt.Println(errors.Is(err, events.ErrMissingField), errors.Is(err, events.ErrMalformed))

	_, err = events.Decode(msg.Headers, []byte(`{"order_id":"order-1"} trailing`))
	fmt.Println(errors.Is(err, events.ErrMalformed))
	// Output:
	// decode shop.order.confirmed.v1: missing field "confirmed_at"
	// true false
	// true
}
