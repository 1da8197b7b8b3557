from django.urls import path

app_name = "scheduling-api"

urlpatterns: list = []
